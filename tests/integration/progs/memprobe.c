/* memprobe: probes of in-memory mount files (shim/mem.h) that need C, for t_memfile.sh.
 *
 *   memprobe raw PATH        opens PATH read-only through libc, reads it once with a raw
 *                            system call no preload can see (the syscall instruction) and once
 *                            through libc: "raw: N bytes" or "raw: errno EBADF", "libc: DATA"
 *   memprobe stdout PATH     close(1), open(PATH) for writing (it becomes descriptor 1),
 *                            printf through stdio, close: the value must be what was printed
 *   memprobe closefrom PATH  opens PATH, closefrom() it away, opens /etc/hostname (the same
 *                            number) and prints what read gives: the host name, not PATH's
 *   memprobe closeall PATH   writes PATH, then closefrom(-1) (glibc takes it as 0): the
 *                            file is committed as by close
 *   memprobe forkclose PATH N  a thread fsyncs a written file in a loop while N forked
 *                            children close it and exit: "forks N hung 0" unless one hangs
 * x86-64 only (the raw system call). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static long raw_read(int fd, void *buf, unsigned long n)
{
    long r;
    __asm__ volatile("syscall"
                     : "=a"(r)
                     : "0"((long)SYS_read), "D"((long)fd), "S"(buf), "d"(n)
                     : "rcx", "r11", "memory");
    return r;
}

static int raw(const char *path)
{
    char buf[256];
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return perror(path), 1;
    long r = raw_read(fd, buf, sizeof buf);
    if (r < 0)
        printf("raw: errno %s\n", -r == EBADF ? "EBADF" : "other");
    else
        printf("raw: %ld bytes\n", r);
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = '\0';
    printf("libc: %s\n", buf);
    close(fd);
    return 0;
}

static int to_stdout(const char *path)
{
    fflush(stdout);
    close(1);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd != 1)
        return 1;
    printf("through stdio %d\n", fd);
    if (fflush(stdout) != 0)
        return 2;
    return close(1) == 0 ? 0 : 3;
}

static int after_closefrom(const char *path)
{
    char buf[256];
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return perror(path), 1;
    closefrom(fd);
    int h = open("/etc/hostname", O_RDONLY);
    ssize_t n = read(h, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = '\0';
    printf("same number %d, read: %s", h == fd, buf);
    close(h);
    return 0;
}

static int close_all(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "by closefrom", 12) != 12)
        return 1;
    closefrom(-1);
    return 0;
}

static int fd_sync;
static volatile int stop;

static void *syncer(void *arg)
{
    (void)arg;
    while (!stop)
        fsync(fd_sync);
    return NULL;
}

static int fork_close(const char *path, int n)
{
    fd_sync = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd_sync < 0 || write(fd_sync, "x", 1) != 1)
        return 1;
    pthread_t t;
    pthread_create(&t, NULL, syncer, NULL);
    int hung = 0;
    for (int i = 0; i < n && !hung; i++) {
        pid_t c = fork();
        if (c == 0) {
            close(fd_sync);
            _exit(0);
        }
        for (int k = 0;; k++) {
            if (waitpid(c, NULL, WNOHANG) == c)
                break;
            if (k > 3000) { /* 3 s */
                hung = 1;
                kill(c, SIGKILL);
                waitpid(c, NULL, 0);
                break;
            }
            usleep(1000);
        }
    }
    stop = 1;
    pthread_join(t, NULL);
    close(fd_sync);
    printf("forks %d hung %d\n", n, hung);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "raw") == 0)
        return raw(argv[2]);
    if (argc == 3 && strcmp(argv[1], "stdout") == 0)
        return to_stdout(argv[2]);
    if (argc == 3 && strcmp(argv[1], "closefrom") == 0)
        return after_closefrom(argv[2]);
    if (argc == 3 && strcmp(argv[1], "closeall") == 0)
        return close_all(argv[2]);
    if (argc == 4 && strcmp(argv[1], "forkclose") == 0)
        return fork_close(argv[2], atoi(argv[3]));
    fprintf(stderr, "usage: see the first comment of memprobe.c\n");
    return 2;
}
