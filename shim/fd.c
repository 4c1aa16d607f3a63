/* fd.c: descriptor calls that copy or drop mount descriptors (dup family, fcntl F_DUPFD,
 * close_range), and the placement of the shim's own descriptors: the NATS library's sockets
 * are made close-on-exec and moved high, out of the range programs dup2 onto (bash's
 * `exec 3> f` must never land on them). */
#include "shim/shim.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "shim/inode.h"
#include "shim/mem.h"

uint64_t shim_fd_kid(int fd)
{
    struct stat st;
    if (real_fstat()(fd, &st) < 0)
        return 0;
    return ((uint64_t)st.st_dev << 40 ^ (uint64_t)st.st_ino) | 1;
}

/* One line for a record whose descriptor fd was closed without the shim seeing it (a raw
 * system call), found now: what became of its bytes (r: the commit's outcome, when last). */
void shim_log_lost(struct shim_file *f, int fd, int last, int r)
{
    char which[32] = "a descriptor";
    if (fd >= 0)
        snprintf(which, sizeof which, "descriptor %d", fd);
    if (r < 0)
        log_at(LOG_ERROR, "%s: %s was closed without the shim seeing it (a raw system "
               "call?): its unsaved bytes are lost (%s), nothing committed", shim_file_rel(f),
               which, strerror(-r));
    else
        log_at(LOG_ERROR, "%s: %s was closed without the shim seeing it (a raw system "
               "call?): %s", shim_file_rel(f), which,
               last ? "committed now from the shim's copy" : "its other descriptors remain");
}

int shim_drop(int fd)
{
    /* A file's descriptor leaves the table under its inode's lock, so an open sharing the
     * inode never moves a descriptor the program is closing (shim_inode_open); inside the
     * shim's fork lock, so no child inherits that lock held. */
    shim_enter();
    struct shim_file *held = fdtable_hold(fd);
    struct shim_inode *ino = held ? held->ino : NULL;
    if (ino)
        pthread_mutex_lock(&ino->mu);
    int last = 0;
    struct shim_file *f = fdtable_take(fd, &last);
    if (ino)
        pthread_mutex_unlock(&ino->mu);
    if (held)
        fdtable_unref(held);
    shim_leave();
    if (!f)
        return 0;
    int r = 0, lost = 0;
    if (last && f->ino && !f->closed) {
        /* Its commit may read fd (not an in-memory file's): is fd still the record's kernel
         * file? A raw close lets the number go to a file of the program's, whose bytes must
         * never be committed as the key's. */
        uint64_t kid = __atomic_load_n(&f->kid, __ATOMIC_ACQUIRE);
        int in_memory = f->mem && !__atomic_load_n(&f->mem->settled, __ATOMIC_ACQUIRE);
        lost = kid && !in_memory && shim_fd_kid(fd) != kid;
        f->closed = 1; /* the record's use of its open file ends: the last one commits */
        r = (f->oflags & O_ACCMODE) != O_RDONLY && !lost
                ? shim_inode_close_written(f->ino, fd, f->mem)
                : shim_inode_close(f->ino, lost ? -1 : fd, f->mem);
    }
    if (lost) {
        shim_log_lost(f, fd, last, r);
        r = 0; /* the program's close of what fd is now is its own */
    }
    if (last && f->mem)
        shim_mem_release(f->mem);
    fdtable_unref(f);
    return r;
}

/* dup (how 0), dup2 (2), dup3 (3) or fcntl's F_DUPFD/F_DUPFD_CLOEXEC (the command). */
static int kernel_dup(int fd, int fd2, int flags, int how)
{
    return how == 0   ? real_dup()(fd)
           : how == 2 ? real_dup2()(fd, fd2)
           : how == 3 ? real_dup3()(fd, fd2, flags)
                      : real_fcntl()(fd, how, (void *)(long)fd2);
}

/* The kernel's copy of fd (by dup, dup2, dup3 or fcntl: how) and its record, as one step
 * under fd's inode lock: an open sharing the inode meanwhile (shim_inode_open) moves every
 * descriptor of it onto the master, and one copied by the kernel but not in the table yet
 * would stay on the old buffer, its writes lost. */
static int dup_as_one(int fd, int fd2, int flags, int how)
{
    if (!fdtable_get(fd))
        return kernel_dup(fd, fd2, flags, how); /* not a mount file: nothing to record */
    shim_enter(); /* inside the fork lock, as shim_drop: no child inherits ino->mu held */
    struct shim_file *held = fdtable_hold(fd);
    struct shim_inode *ino = held ? held->ino : NULL;
    if (ino)
        pthread_mutex_lock(&ino->mu);
    int newfd = kernel_dup(fd, fd2, flags, how);
    int err = newfd < 0 ? errno : 0, r = 0;
    struct shim_file *stale = NULL; /* newfd's record: its descriptor was closed unseen */
    if (newfd >= 0 && held && newfd != fd) {
        if ((stale = fdtable_take(newfd, NULL)))
            stale->lost = 1; /* released below, not under ino->mu (it may be its inode's) */
        if ((r = fdtable_set(newfd, held)) < 0)
            real_close()(newfd); /* untracked, it could never be committed */
    }
    if (ino)
        pthread_mutex_unlock(&ino->mu);
    if (stale)
        fdtable_unref(stale);
    if (held)
        fdtable_unref(held);
    shim_leave(); /* restores the caller's errno */
    if (newfd < 0) {
        errno = err;
        return -1;
    }
    return r < 0 ? shim_fail(r) : newfd;
}

/* A copy shares the open file, offset included: an in-memory file becomes a kernel one. */
SHIM_EXPORT int dup(int fd)
{
    int s = shim_mem_settle(fd); /* nothing to settle under the guard */
    if (s < 0)
        return shim_fail(s);
    return shim_guard ? real_dup()(fd) : dup_as_one(fd, 0, 0, 0);
}

/* dup2/dup3 onto a mount descriptor drop it first, committing it when it was the last. */
static int dup_onto(int fd, int fd2, int flags, int three)
{
    if (shim_guard)
        return three ? real_dup3()(fd, fd2, flags) : real_dup2()(fd, fd2);
    int s = shim_mem_settle(fd);
    if (s < 0)
        return shim_fail(s);
    /* An invalid fd leaves fd2 alone, as dup2 itself does. */
    int onto_ours = fd != fd2 && fdtable_get(fd2) && real_fcntl()(fd, F_GETFD, NULL) >= 0;
    int r = onto_ours ? shim_drop(fd2) : 0;
    int newfd = dup_as_one(fd, fd2, flags, three ? 3 : 2);
    if (newfd < 0)
        return newfd;
    if (fd != fd2)
        shim_mem_fd_closing(fd2, fd2); /* fd2 was closed: it may have been the placeholder */
    return r < 0 ? shim_fail(r) : newfd;
}

SHIM_EXPORT int dup2(int fd, int fd2)
{
    return dup_onto(fd, fd2, 0, 0);
}

SHIM_EXPORT int dup3(int fd, int fd2, int flags)
{
    return dup_onto(fd, fd2, flags, 1);
}

/* The one body of fcntl and fcntl64: the argument is read once, as glibc does. */
static int fcntl_body(int fd, int cmd, void *arg)
{
    int r;
    if (shim_lock_fcntl(fd, cmd, arg, &r))
        return r;
    if (!shim_guard && shim_mem_fcntl(fd, cmd, arg, &r))
        return r;
    if (!shim_guard && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC))
        return dup_as_one(fd, (int)(long)arg, 0, cmd);
    return real_fcntl()(fd, cmd, arg);
}

SHIM_EXPORT int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fcntl_body(fd, cmd, arg);
}

SHIM_EXPORT int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fcntl_body(fd, cmd, arg);
}

/* The mount descriptors in [first, last] are going away: dropped (committed when last). */
static int drop_range(unsigned int first, unsigned int last)
{
    int r = 0;
    shim_mem_fd_closing((int)(first > INT32_MAX ? INT32_MAX : first),
                        (int)(last > INT32_MAX ? INT32_MAX : last));
    int fd = first < FDTABLE_MAX ? fdtable_next((int)first) : -1;
    for (; fd >= 0 && (unsigned int)fd <= last; fd = fdtable_next(fd + 1)) {
        int d = shim_drop(fd);
        if (d < 0 && r == 0)
            r = d;
    }
    return r;
}

SHIM_EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
    int r = !shim_guard && !(flags & CLOSE_RANGE_CLOEXEC) ? drop_range(first, last) : 0;
    int c = real_close_range()(first, last, flags);
    return r < 0 ? shim_fail(r) : c;
}

/* glibc's closefrom closes through its internal close_range: the same as close_range. */
SHIM_EXPORT void closefrom(int lo)
{
    if (!shim_guard) /* glibc takes a negative lo as 0; closefrom reports nothing */
        (void)drop_range(lo < 0 ? 0U : (unsigned int)lo, ~0U);
    real_closefrom()(lo);
}

/* The lowest descriptor the shim's own files use: below the soft limit, above what programs
 * pick (shells use 10 and up, a few hundred at most). */
static int high_base(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
        return 1000;
    long lim = (long)rl.rlim_cur;
    return lim > 4096 ? 4000 : (int)(lim > 128 ? lim - 64 : lim / 2);
}

void shim_fd_reserve_high(void)
{
    /* The kernel grows a process's descriptor table on the first descriptor past its size;
     * with several threads sharing the table that waits for an RCU grace period (measured:
     * 8.5 ms for the NATS socket's move to 4000, after nats.c started its threads). Grown
     * here, before the backend creates any thread, it costs microseconds. */
    int fd = real_openat()(AT_FDCWD, "/", O_PATH | O_CLOEXEC);
    if (fd < 0)
        return;
    int hi = real_fcntl()(fd, F_DUPFD_CLOEXEC, (void *)(long)high_base());
    if (hi >= 0)
        real_close()(hi);
    real_close()(fd);
}

int shim_fd_high(int fd)
{
    if (fd < 0)
        return fd;
    int hi = real_fcntl()(fd, F_DUPFD_CLOEXEC, (void *)(long)high_base());
    if (hi < 0) {
        real_fcntl()(fd, F_SETFD, (void *)(long)FD_CLOEXEC);
        return fd; /* no room up there: at least close-on-exec */
    }
    real_close()(fd);
    return hi;
}

/* 1 when the code at addr belongs to the NATS library (its sockets are the shim's). */
static int from_nats(const void *addr)
{
    Dl_info info;
    return dladdr(addr, &info) && info.dli_fname && strstr(info.dli_fname, "libnats");
}

SHIM_EXPORT int socket(int domain, int type, int protocol)
{
    int fd = real_socket()(domain, type, protocol);
    if (fd >= 0 && shim_backend_loaded() &&
        (shim_guard || from_nats(__builtin_return_address(0))))
        fd = shim_fd_high(fd);
    return fd;
}
