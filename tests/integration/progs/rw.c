/* rw: plain POSIX file I/O for the integration tests, knowing nothing of NATS.
 *
 *   rw write PATH DATA     open(O_WRONLY|O_CREAT|O_TRUNC), write, close
 *   rw read PATH           open(O_RDONLY), read all to stdout, close
 *   rw conflict PATH CMD   read PATH whole, run CMD (system()), then rewrite PATH;
 *                          prints "close: OK" or "close: <errno name>"
 *
 * Exit 0 when every call succeeded; otherwise prints "<call>: <errno name>" and exits 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *ename(int e)
{
    switch (e) {
    case ENOENT: return "ENOENT";
    case EEXIST: return "EEXIST";
    case EIO: return "EIO";
    case EACCES: return "EACCES";
    case ETIMEDOUT: return "ETIMEDOUT";
    case ECONNREFUSED: return "ECONNREFUSED";
    default: return strerror(e);
    }
}

static int failed(const char *call)
{
    printf("%s: %s\n", call, ename(errno));
    return 1;
}

static int do_write(const char *path, const char *data)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return failed("open");
    size_t len = strlen(data);
    if (write(fd, data, len) != (ssize_t)len)
        return failed("write");
    if (close(fd) != 0)
        return failed("close");
    return 0;
}

static int do_read(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return failed("open");
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        fwrite(buf, 1, (size_t)n, stdout);
    if (n < 0)
        return failed("read");
    if (close(fd) != 0)
        return failed("close");
    return 0;
}

static int do_conflict(const char *path, const char *cmd)
{
    if (do_read(path) != 0)
        return 1;
    putchar('\n');
    fflush(stdout);
    if (system(cmd) != 0) {
        printf("system: command failed\n");
        return 1;
    }
    int fd = open(path, O_WRONLY | O_TRUNC);
    if (fd < 0)
        return failed("open");
    if (write(fd, "from C", 6) != 6)
        return failed("write");
    if (close(fd) != 0) {
        printf("close: %s\n", ename(errno));
        return 0;
    }
    printf("close: OK\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "write") == 0)
        return do_write(argv[2], argv[3]);
    if (argc == 3 && strcmp(argv[1], "read") == 0)
        return do_read(argv[2]);
    if (argc == 4 && strcmp(argv[1], "conflict") == 0)
        return do_conflict(argv[2], argv[3]);
    fprintf(stderr, "usage: rw write PATH DATA | read PATH | conflict PATH CMD\n");
    return 2;
}
