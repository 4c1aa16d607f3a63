/* inject.c: a test-only preload placed after the shim (LD_PRELOAD="shim inject.so"). The
 * shim reaches libc through dlsym(RTLD_NEXT), so its own calls of fstat, dup and dup3 come
 * here first (and its pthread_mutex_lock and _unlock calls: the shim defines none, the
 * preload's are found before libc's): this library widens a race window or fails a call, in the calling thread only,
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
static __thread int unlock_delay_us; /* an unlock of a recorded mutex waits this long after */
static __thread int recording;       /* this thread's locks are recorded */
static void *recorded[64];           /* the mutexes a recording thread locked */
static int nrecorded;

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
    else if (!strcmp(what, "record_locks"))
        recording = n;
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

static int is_recorded(const void *mu)
{
    int n = __atomic_load_n(&nrecorded, __ATOMIC_ACQUIRE);
    for (int i = 0; i < n; i++)
        if (recorded[i] == mu)
            return 1;
    return 0;
}

int pthread_mutex_lock(pthread_mutex_t *mu)
{
    static int (*real)(pthread_mutex_t *);
    if (!real)
        real = (int (*)(pthread_mutex_t *))next("pthread_mutex_lock");
    int r = real(mu);
    if (recording && !is_recorded(mu) && nrecorded < 64) { /* one recording thread at a time */
        recorded[nrecorded] = mu;
        __atomic_store_n(&nrecorded, nrecorded + 1, __ATOMIC_RELEASE);
    }
    return r;
}

/* Only mutexes the recording thread took: the locks the two threads share. */
int pthread_mutex_unlock(pthread_mutex_t *mu)
{
    static int (*real)(pthread_mutex_t *);
    if (!real)
        real = (int (*)(pthread_mutex_t *))next("pthread_mutex_unlock");
    int r = real(mu);
    if (unlock_delay_us && is_recorded(mu))
        usleep((useconds_t)unlock_delay_us);
    return r;
}
