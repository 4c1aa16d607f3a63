/* shimprog.c: the shim side of the bench. Plain libc file I/O only (no libnats here); run it
 * under LD_PRELOAD with a mount so the paths below are state files.
 *
 *   shimprog cycles DIR          batches from stdin (see common.h) on DIR/v<size>
 *   shimprog first PATH          one read-open of PATH; prints microseconds since BENCH_T0_NS
 *   shimprog mkhold DIR N SIZE   creates DIR (if missing) and DIR/h000.. (N files of SIZE bytes)
 *   shimprog hold DIR N          opens and reads N files, keeps them open; prints ru_maxrss KiB
 *   shimprog loop PATH N         N open/read/close of PATH; prints seconds
 *   shimprog watch PATH          for each word read from stdin, reads PATH until it holds
 *                                that word, then prints the monotonic time in ns (gives up
 *                                after 5 s without it) */
#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

static const char *dir;
static char *buf;
static size_t bufcap;

static int ensure_buf(size_t size)
{
    if (size + 1 <= bufcap)
        return 0;
    free(buf);
    bufcap = size + 1;
    buf = malloc(bufcap);
    return buf ? 0 : -ENOMEM;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static ssize_t read_all(int fd, char *p, size_t cap)
{
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, p + got, cap - got);
        if (r < 0)
            return -errno;
        if (r == 0)
            return (ssize_t)got;
        got += (size_t)r;
        if (got == cap)
            return (ssize_t)got;
    }
}

static int put_file(const char *path, const char *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -errno;
    int r = write_all(fd, p, n);
    if (close(fd) < 0 && r == 0)
        r = -errno;
    return r;
}

static int cycle(const char *op, size_t size, unsigned iter)
{
    char path[4096];
    int fd, r;
    ssize_t n;
    snprintf(path, sizeof path, "%s/v%zu", dir, size);
    if ((r = ensure_buf(size)) < 0)
        return r;
    if (strcmp(op, "init") == 0) {
        memset(buf, 'a', size);
        return put_file(path, buf, size);
    }
    if (strcmp(op, "read") == 0) {
        if ((fd = open(path, O_RDONLY)) < 0)
            return -errno;
        n = read_all(fd, buf, bufcap);
        close(fd);
        return n < 0 ? (int)n : 0;
    }
    if (strcmp(op, "write") == 0) {
        buf[0] = (char)('a' + iter % 26);
        return put_file(path, buf, size);
    }
    if (strcmp(op, "rmw") == 0) {
        if ((fd = open(path, O_RDWR)) < 0)
            return -errno;
        n = read_all(fd, buf, bufcap);
        if (n < 0) {
            close(fd);
            return (int)n;
        }
        buf[0] = (char)('a' + iter % 26);
        r = lseek(fd, 0, SEEK_SET) < 0 ? -errno : write_all(fd, buf, (size_t)n);
        if (close(fd) < 0 && r == 0)
            r = -errno;
        return r;
    }
    return -EINVAL;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "cycles") == 0) {
        dir = argv[2];
        return bench_serve(cycle);
    }
    if (argc >= 3 && strcmp(argv[1], "first") == 0) {
        char b[65536];
        int fd = open(argv[2], O_RDONLY);
        if (fd < 0 || read_all(fd, b, sizeof b) < 0) {
            perror(argv[2]);
            return 1;
        }
        close(fd);
        printf("%.1f\n", bench_since_t0_us());
        return 0;
    }
    if (argc >= 5 && strcmp(argv[1], "mkhold") == 0) {
        size_t size = strtoul(argv[4], NULL, 10);
        char *v = malloc(size), path[4096];
        if (!v)
            return 1;
        memset(v, 'h', size);
        if (mkdir(argv[2], 0755) < 0 && errno != EEXIST) { /* a create needs its directory */
            perror(argv[2]);
            return 1;
        }
        for (int i = 0; i < atoi(argv[3]); i++) {
            snprintf(path, sizeof path, "%s/h%03d", argv[2], i);
            if (put_file(path, v, size) < 0) {
                perror(path);
                return 1;
            }
        }
        free(v);
        return 0;
    }
    if (argc >= 4 && strcmp(argv[1], "hold") == 0) {
        char path[4096], *b = malloc(1 << 20);
        if (!b)
            return 1;
        for (int i = 0; i < atoi(argv[3]); i++) {
            snprintf(path, sizeof path, "%s/h%03d", argv[2], i);
            int fd = open(path, O_RDONLY);
            if (fd < 0 || read_all(fd, b, 1 << 20) < 0) {
                perror(path);
                return 1;
            }
            /* kept open on purpose */
        }
        /* ru_maxrss survives execve on Linux (it would report the spawning Python's peak),
         * so the figure is VmHWM of this image; ru_maxrss is printed second. */
        struct rusage ru;
        char line[256];
        long hwm = -1;
        FILE *st = fopen("/proc/self/status", "r");
        while (st && fgets(line, sizeof line, st))
            if (sscanf(line, "VmHWM: %ld", &hwm) == 1)
                break;
        if (st)
            fclose(st);
        getrusage(RUSAGE_SELF, &ru);
        printf("%ld %ld\n", hwm, ru.ru_maxrss);
        return 0;
    }
    if (argc >= 4 && strcmp(argv[1], "loop") == 0) {
        char b[4096];
        long n = atol(argv[3]);
        uint64_t t0 = bench_now_ns();
        for (long i = 0; i < n; i++) {
            int fd = open(argv[2], O_RDONLY);
            if (fd < 0 || read_all(fd, b, sizeof b) < 0) {
                perror(argv[2]);
                return 1;
            }
            close(fd);
        }
        printf("%.4f\n", (double)(bench_now_ns() - t0) / 1e9);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "watch") == 0) {
        char want[32], b[64];
        struct timespec pause = { 0, 20000 };
        while (scanf("%31s", want) == 1) {
            uint64_t give_up = bench_now_ns() + 5000000000ull;
            for (;;) {
                if (bench_now_ns() > give_up) {
                    fprintf(stderr, "%s: never read %s\n", argv[2], want);
                    return 1;
                }
                int fd = open(argv[2], O_RDONLY);
                ssize_t n = fd < 0 ? -errno : read_all(fd, b, sizeof b - 1);
                if (fd >= 0)
                    close(fd);
                if (n < 0 && n != -ENOENT) {
                    fprintf(stderr, "%s: %s\n", argv[2], strerror((int)-n));
                    return 1;
                }
                if (n >= 0 && (b[n] = '\0', strcmp(b, want) == 0))
                    break;
                nanosleep(&pause, NULL);
            }
            printf("%llu\n", (unsigned long long)bench_now_ns());
            fflush(stdout);
        }
        return 0;
    }
    fprintf(stderr, "usage: see the first comment of bench/shimprog.c\n");
    return 2;
}
