/* file.c: the open family, close and fsync on mount paths.
 *
 * Open reads the whole value (when the flags need it) into a buffer: an in-memory file
 * (shim/mem.h) that becomes a memfd as soon as anything but read, write, seek or stat needs
 * the kernel file, or (ASYA_STATE_BUFFER=memfd) a memfd at once. Either way the program
 * holds a real descriptor with its access mode, and every later call works.
 * Close of the owner's last descriptor commits the buffer by the contract's rules; fsync
 * commits and keeps the file open. Everything else goes to libc untouched. */
#include "shim/shim.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "shim/mem.h"

/* The one place the variadic mode argument of open/openat is read. */
static mode_t open_mode(int flags, va_list ap)
{
    /* as glibc reads it: O_TMPFILE shares its O_DIRECTORY bit, which alone takes no mode */
    return ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) ? (mode_t)va_arg(ap, int) : 0;
}

static int writable(int oflags)
{
    return (oflags & O_ACCMODE) != O_RDONLY;
}

/* Writes len bytes at the start of fd. */
static int fill(int fd, const void *data, size_t len)
{
    const char *p = data;
    size_t done = 0;
    while (done < len) {
        ssize_t n = real_pwrite()(fd, p + done, len - done, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        done += (size_t)n;
    }
    return 0;
}

/* shim_buffer_open: a read-only open gets the
 * memfd sealed against writes and size changes (one fcntl; a write then fails with EPERM
 * where a local read-only descriptor gives EBADF). A write-only open gets the read-write
 * memfd: the commit reads it back through the same descriptor, and a program that reads a
 * descriptor it opened write-only sees its own buffer instead of EBADF (README, Limits).
 * Returns the descriptor or -errno. */
int shim_buffer_open(const void *data, size_t len, int oflags)
{
    int rdonly = (oflags & O_ACCMODE) == O_RDONLY;
    int fd = memfd_create("asya-state", ((oflags & O_CLOEXEC) ? MFD_CLOEXEC : 0) |
                                            (rdonly ? MFD_ALLOW_SEALING : 0));
    if (fd < 0)
        return -errno;
    int r = fill(fd, data, len);
    if (r == 0 && rdonly &&
        real_fcntl()(fd, F_ADD_SEALS,
                     (void *)(long)(F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL)) < 0)
        r = -errno;
    int fl = oflags & (O_APPEND | O_NONBLOCK);
    if (r == 0 && fl && real_fcntl()(fd, F_SETFL, (void *)(long)fl) < 0)
        r = -errno;
    if (r < 0) {
        real_close()(fd);
        return r;
    }
    return fd;
}

/* A descriptor standing for a mount directory: an O_PATH descriptor of "/" recorded as the
 * directory, so fstat, fdopendir, fchdir and the *at() calls (all hooked) see the mount. */
static int dir_open(const struct shim_path *p, int oflags)
{
    if (writable(oflags))
        return -EISDIR;
    int fd = real_openat()(AT_FDCWD, "/", O_PATH | O_DIRECTORY | (oflags & O_CLOEXEC));
    if (fd < 0)
        return -errno;
    struct shim_file *f = calloc(1, sizeof *f);
    char *rel = strdup(p->rel);
    int r = (f && rel) ? 0 : -ENOMEM;
    if (r == 0) {
        *f = (struct shim_file){ .mount_idx = p->idx, .rel = rel, .oflags = oflags,
                                 .owner = shim_pid(), .is_dir = 1 };
        r = fdtable_set(fd, f);
    }
    if (r < 0) {
        free(f);
        free(rel);
        real_close()(fd);
        return r;
    }
    /* f and rel now belong to the descriptor table (fdtable_set), freed with the entry */
    /* cppcheck-suppress memleak */
    return fd;
}

/* Opens a mount path: returns a descriptor or -errno. Call with the guard held. */
static int open_mount(const struct shim_path *p, int oflags, int how)
{
    const kv_ops *ops;
    kv_mount *km;
    int r = shim_backend(p->idx, &ops, &km);
    if (r < 0)
        return r;
    if ((oflags & O_TMPFILE) == O_TMPFILE)
        return -EOPNOTSUPP;
    if (*p->rel == '\0' || (oflags & O_DIRECTORY)) {
        kv_stat ks;
        r = ops->stat(km, p->rel, &ks);
        if (r < 0)
            return r;
        return ks.is_dir ? dir_open(p, oflags) : -ENOTDIR;
    }

    kv_value v = { 0 };
    int created = 0;
    int need_get = !(oflags & O_TRUNC) || (oflags & O_EXCL);
    if (need_get) {
        r = ops->get(km, p->rel, &v);
        if (r == -ENOENT) {
            kv_stat ks;
            if (ops->stat(km, p->rel, &ks) == 0 && ks.is_dir)
                return dir_open(p, oflags);
            if (!(oflags & O_CREAT))
                return -ENOENT;
            created = 1;
        } else if (r < 0) {
            return r;
        } else if ((oflags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL)) {
            ops->release_value(&v);
            return -EEXIST;
        }
    }
    if (oflags & O_TRUNC)
        v.len = 0;

    struct shim_file *f = calloc(1, sizeof *f);
    char *rel = f ? strdup(p->rel) : NULL;
    if (!rel) {
        free(f);
        ops->release_value(&v);
        return -ENOMEM;
    }
    *f = (struct shim_file){
        .mount_idx = p->idx, .rel = rel, .oflags = oflags, .owner = shim_pid(),
        .force = created || (oflags & O_TRUNC), .excl = (oflags & O_EXCL) != 0,
        .rev = v.rev, .mtime_ns = v.mtime_ns, .base_len = v.len,
        .base_hash = writable(oflags) ? fdtable_hash(v.data, v.len, FDTABLE_HASH_SEED) : 0,
    };
    int fd = shim_mem_enabled() && !(how & SHIM_OPEN_KERNEL)
                 ? shim_mem_open(&v, ops, oflags, f, &f->mem) : -ENOSYS;
    if (fd == -ENOSYS) /* a memfd from the start: asked for, or an in-memory file cannot be */
        fd = shim_buffer_open(v.data, v.len, oflags);
    r = fd < 0 ? fd : fdtable_set(fd, f);
    ops->release_value(&v); /* an in-memory read-only file took it: then a no-op */
    if (r < 0) { /* f never made it into the table */
        if (fd >= 0)
            real_close()(fd);
        if (f->mem)
            fdtable_free_mem(f->mem);
        free(rel);
        free(f);
        return r;
    }
    log_at(LOG_DEBUG, "open %s (%s) rev %llu fd %d", p->rel, p->mount->path,
           (unsigned long long)f->rev, fd);
    return fd;
}

/* shim_open for a path that may be on a mount (kept apart: its frame holds a path buffer). */
static __attribute__((noinline)) int open_resolved(int dirfd, const char *path, int oflags,
                                                  mode_t mode, int how)
{
    struct shim_path p;
    int r = shim_resolve(dirfd, path, &p);
    if (r < 0)
        return r;
    if (r == 1) {
        shim_enter();
        r = open_mount(&p, oflags, how);
        shim_leave();
        return r;
    }
    int fd = real_openat()(dirfd, p.local, oflags, mode);
    return fd < 0 ? -errno : fd;
}

int shim_open(int dirfd, const char *path, int oflags, mode_t mode, int how)
{
    if (!shim_guard && !shim_foreign(path))
        return open_resolved(dirfd, path, oflags, mode, how);
    int fd = real_openat()(dirfd, path, oflags, mode);
    return fd < 0 ? -errno : fd;
}

/* The one body of every open hook. */
SHIM_SLOW int open_slow(int dirfd, const char *path, int oflags, mode_t mode)
{
    if (__atomic_load_n(&shim_mem_live, __ATOMIC_RELAXED) && !shim_guard)
        shim_mem_settle_at(dirfd, path);
    if (shim_guard || shim_foreign(path))
        return real_openat()(dirfd, path, oflags, mode);
    int r = shim_open(dirfd, path, oflags, mode, 0);
    return r < 0 ? shim_fail(r) : r;
}

static inline int open_body(int dirfd, const char *path, int oflags, mode_t mode)
{
    SHIM_FAST(openat, shim_foreign_quick(path), open_slow, dirfd, path, oflags, mode);
}

SHIM_EXPORT int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = open_mode(flags, ap);
    va_end(ap);
    return open_body(AT_FDCWD, path, flags, mode);
}

SHIM_EXPORT int open64(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = open_mode(flags, ap);
    va_end(ap);
    return open_body(AT_FDCWD, path, flags, mode);
}

SHIM_EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = open_mode(flags, ap);
    va_end(ap);
    return open_body(dirfd, path, flags, mode);
}

SHIM_EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = open_mode(flags, ap);
    va_end(ap);
    return open_body(dirfd, path, flags, mode);
}

/* The fortified entry points take no mode (they are only used without O_CREAT). */
SHIM_EXPORT int __open_2(const char *path, int flags)
{
    return open_body(AT_FDCWD, path, flags, 0);
}

SHIM_EXPORT int __open64_2(const char *path, int flags)
{
    return open_body(AT_FDCWD, path, flags, 0);
}

SHIM_EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
    return open_body(dirfd, path, flags, 0);
}

SHIM_EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
    return open_body(dirfd, path, flags, 0);
}

SHIM_EXPORT int creat(const char *path, mode_t mode)
{
    return open_body(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

SHIM_EXPORT int creat64(const char *path, mode_t mode)
{
    return open_body(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

/* The whole buffer behind a descriptor, for a commit: read into a malloc()ed block, or
 * mapped when large. Copying is cheaper than mapping and faulting the pages in up to about
 * 512 KiB (measured on the 2-core development VM: 3.7 vs 12 us at 64 KiB, 27 vs 23 us at
 * 512 KiB). */
#define VIEW_MAP_MIN (512 * 1024)

struct view {
    void *data;     /* NULL when len is 0 */
    size_t len;
    int mapped;
    int borrowed;   /* an in-memory file's own bytes */
};

/* -EBADF when the kernel holds fd write-only (then the caller reopens it read-only). */
static int view_fd(int fd, struct view *v)
{
    struct stat st;
    *v = (struct view){ 0 };
    if (real_fstat()(fd, &st) < 0)
        return -errno;
    if (st.st_size == 0)
        return 0;
    size_t len = (size_t)st.st_size;
    if (len >= VIEW_MAP_MIN) {
        void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
            return errno == EACCES ? -EBADF : -errno;
        *v = (struct view){ .data = p, .len = len, .mapped = 1 };
        return 0;
    }
    char *buf = malloc(len);
    if (!buf)
        return -ENOMEM;
    size_t done = 0;
    while (done < len) {
        ssize_t n = real_pread()(fd, buf + done, len - done, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int r = n < 0 ? -errno : -EIO;
            free(buf);
            return r;
        }
        done += (size_t)n;
    }
    *v = (struct view){ .data = buf, .len = done };
    return 0;
}

/* The descriptors the shim makes for writing are readable (see buffer_open); one the kernel
 * holds write-only (freopen through /proc) is read through a read-only reopen of the file. */
static int view_open(int fd, struct view *v)
{
    int r = view_fd(fd, v);
    if (r != -EBADF)
        return r;
    char proc[32];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    int rfd = real_openat()(AT_FDCWD, proc, O_RDONLY | O_CLOEXEC);
    if (rfd < 0)
        return -errno;
    r = view_fd(rfd, v);
    real_close()(rfd); /* a mapping outlives its descriptor */
    return r;
}

static void view_close(struct view *v, struct shim_mem *m)
{
    if (m)
        shim_mem_unlock(m);
    if (v->borrowed)
        return;
    if (v->mapped)
        munmap(v->data, v->len);
    else
        free(v->data);
}

/* The buffer of an in-memory file, locked (*mp; NULL when fd is a kernel file). */
static int view_of(int fd, const struct shim_file *f, struct view *v, struct shim_mem **mp)
{
    struct shim_mem *m = f->mem ? shim_mem_lock(f->mem) : NULL; /* fd may be out of the table */
    *mp = m;
    if (!m)
        return view_open(fd, v);
    *v = (struct view){ .data = m->data, .len = m->len, .borrowed = 1 };
    return 0;
}

int shim_commit(int fd, struct shim_file *f, int final)
{
    if (f->is_dir || !writable(f->oflags) || f->owner != shim_pid())
        return 0;
    struct view v;
    struct shim_mem *m; /* held locked while its bytes are committed */
    shim_enter();       /* first: a fork holds its lock while it takes every buffer's */
    int r = view_of(fd, f, &v, &m);
    if (r < 0) {
        shim_leave();
        return r;
    }
    /* The hash tells whether the bytes changed; a forced final commit needs no answer. */
    uint64_t hash = f->force && final ? 0 : fdtable_hash(v.data, v.len, FDTABLE_HASH_SEED);
    if (!f->force && v.len == f->base_len && hash == f->base_hash) {
        view_close(&v, m);
        shim_leave();
        return 0;
    }
    const kv_ops *ops;
    kv_mount *km;
    uint64_t rev = 0;
    r = shim_backend(f->mount_idx, &ops, &km);
    if (r == 0 && f->carried) {
        /* the revision memory of the program that opened it, carried across exec */
        ops->remember(km, f->rel, f->carried);
        f->carried = 0;
    }
    if (r == 0)
        r = ops->commit(km, f->rel, v.data, v.len, f->excl ? KV_COMMIT_EXCL : 0, &rev);
    view_close(&v, m);
    shim_leave();
    if (r == 0) {
        struct timespec now; /* the new revision's time, as the client sees it */
        clock_gettime(CLOCK_REALTIME, &now);
        f->mtime_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
        f->rev = rev;
        f->base_len = v.len;
        f->base_hash = hash;
        f->force = 0;
        f->excl = 0;
    }
    return r;
}

SHIM_SLOW int close_slow(int fd)
{
    if (!shim_guard)
        shim_mem_fd_closing(fd, fd);
    if (shim_guard || !fdtable_get(fd))
        return real_close()(fd);
    int r = shim_drop(fd);
    int c = real_close()(fd);
    if (r < 0)
        return shim_fail(r);
    return c;
}

/* No record in the table and no placeholder to forget: libc's close, nothing else. */
SHIM_EXPORT int close(int fd)
{
    SHIM_FAST(close, fdtable_empty() && __atomic_load_n(&shim_mem_placeholder,
                                                         __ATOMIC_RELAXED) < 0,
              close_slow, fd);
}

static int sync_body(int fd, int (*real)(int))
{
    struct shim_file *f = shim_guard ? NULL : fdtable_get(fd);
    if (!f || f->is_dir)
        return real(fd);
    int r = shim_commit(fd, f, 0);
    return r < 0 ? shim_fail(r) : 0;
}

SHIM_EXPORT int fsync(int fd)
{
    return sync_body(fd, real_fsync());
}

SHIM_EXPORT int fdatasync(int fd)
{
    return sync_body(fd, real_fdatasync());
}
