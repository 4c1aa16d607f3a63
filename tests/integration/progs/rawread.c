/* rawread PATH: opens PATH read-only through libc (hooked), then reads it once with a raw
 * system call that no preload can see (the syscall instruction, not libc's syscall()), and
 * once through libc's read. Prints "raw: N bytes" or "raw: errno E", then "libc: DATA".
 * Under the shim an in-memory file must fail the raw read loudly (EBADF), never answer it
 * with wrong bytes. x86-64 only. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
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

int main(int argc, char **argv)
{
    char buf[256];
    if (argc != 2)
        return 2;
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
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
