/* inject.c: a test-only preload placed after the shim (LD_PRELOAD="shim inject.so"). The
 * shim reaches libc through dlsym(RTLD_NEXT), so its own calls of fstat, dup and dup3 come
 * here first (and its pthread_mutex_unlock calls: the shim defines none, the preload's is
 * found before libc's): this library widens a race window or fails a call, in the calling thread only,
 * as the test program asks with inject_set(). It forces the interleavings inode_race.c
 * checks, instead of hoping a loop meets them. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static __thread int fstat_delay_us; /* each fstat waits this long first */
static __thread int dup_delay_us;   /* each dup waits this long after the kernel's copy */
static __thread int dup3_fail_in;   /* the dup3 this many calls from now fails with EBUSY */
static __thread int unlock_delay_us; /* each pthread_mutex_unlock waits this long after */

__attribute__((visibility("default"))) void inject_set(const char *what, int n)
{
    if (!strcmp(what, "fstat_delay_us"))
        fstat_delay_us = n;
    else if (!strcmp(what, "dup_delay_us"))
        dup_delay_us = n;
    else if (!strcmp(what, "dup3_fail_in"))
        dup3_fail_in = n;
    else if (!strcmp(what, "unlock_delay_us"))
        unlock_delay_us = n;
}

static void *next(const char *name)
{
    return dlsym(RTLD_NEXT, name);
}

int fstat(int fd, struct stat *st)
{
    static int (*real)(int, struct stat *);
    if (!real)
        real = (int (*)(int, struct stat *))next("fstat");
    if (fstat_delay_us)
        usleep((useconds_t)fstat_delay_us);
    return real(fd, st);
}

int dup(int fd)
{
    static int (*real)(int);
    if (!real)
        real = (int (*)(int))next("dup");
    int r = real(fd);
    if (dup_delay_us) {
        int e = errno;
        usleep((useconds_t)dup_delay_us);
        errno = e;
    }
    return r;
}

int dup3(int fd, int fd2, int flags)
{
    static int (*real)(int, int, int);
    if (!real)
        real = (int (*)(int, int, int))next("dup3");
    if (dup3_fail_in && --dup3_fail_in == 0) {
        errno = EBUSY;
        return -1;
    }
    return real(fd, fd2, flags);
}

int pthread_mutex_unlock(pthread_mutex_t *mu)
{
    static int (*real)(pthread_mutex_t *);
    if (!real)
        real = (int (*)(pthread_mutex_t *))next("pthread_mutex_unlock");
    int r = real(mu);
    if (unlock_delay_us)
        usleep((useconds_t)unlock_delay_us);
    return r;
}
