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
#include "shim/inode.h"
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

/* open_mount's own how flag, beside SHIM_OPEN_KERNEL: the path ended in '/'. */
#define OPEN_SLASH 0x100

/* Records fd (a new open file description of ino) in the descriptor table. On failure the
 * record's use of ino ends without a commit and fd is closed. */
static int record(int fd, struct shim_inode *ino, int idx, int oflags, struct shim_mem *mem)
{
    struct shim_file *f = calloc(1, sizeof *f);
    int r = f ? 0 : -ENOMEM;
    if (f) {
        *f = (struct shim_file){ .mount_idx = idx, .oflags = oflags, .owner = shim_pid(),
                                 .ino = ino, .mem = mem, .kid = shim_fd_kid(fd) };
        if (mem)
            mem->file = f;
        r = fdtable_set(fd, f);
    }
    if (r == 0)
        return fd;
    real_close()(fd);
    if (mem)
        fdtable_free_mem(mem);
    free(f);
    shim_inode_close(ino, -1, NULL);
    shim_inode_put(ino);
    return r;
}

/* Another open of a key this process has open: it shares the open file (SPEC). */
static int open_shared(const struct shim_path *p, struct shim_inode *ino, int oflags)
{
    int fd = (oflags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL) ? -EEXIST
                                                                  : shim_inode_open(ino, oflags);
    if (fd < 0) {
        shim_inode_close(ino, -1, NULL); /* not its last use: another record holds one */
        shim_inode_put(ino);
        return fd;
    }
    return record(fd, ino, p->idx, oflags, NULL);
}

/* Opens a mount path: returns a descriptor or -errno. Call with the guard held. */
static int open_mount(const struct shim_path *p, int oflags, int how)
{
    const kv_ops *ops;
    kv_mount *km;
    int r = shim_backend(p->idx, &ops, &km);
    if (r == 0) /* name, connection, login, bucket: errors at open, as on a local disk */
        r = ops->bind(km, p->rel);
    if (r < 0)
        return r;
    if ((oflags & O_TMPFILE) == O_TMPFILE)
        return -EOPNOTSUPP;
    if ((how & OPEN_SLASH) && (writable(oflags) || (oflags & O_CREAT)))
        return -EISDIR; /* "name/" for writing: a directory, or nothing a file can be */
    struct shim_inode *ino = *p->rel ? shim_inode_get(p->idx, p->rel) : NULL;
    if (ino && (how & OPEN_SLASH)) {
        shim_inode_close(ino, -1, NULL);
        shim_inode_put(ino);
        return -ENOTDIR;
    }
    if (ino)
        return open_shared(p, ino, oflags);
    if (*p->rel == '\0' || (oflags & O_DIRECTORY) || (how & OPEN_SLASH)) {
        kv_stat ks;
        r = ops->stat(km, p->rel, &ks);
        if (r < 0)
            return r;
        return ks.is_dir ? dir_open(p, oflags) : -ENOTDIR;
    }

    kv_value v = { 0 };
    int created = 0;
    int need_get = !(oflags & O_TRUNC) || (oflags & O_EXCL);
    if ((oflags & (O_TRUNC | O_CREAT)) == O_TRUNC) {
        /* must exist; asked without a get, whose revision would become the one this
         * blind write expects (the program's own read is what it is based on) */
        kv_stat ks;
        if ((r = ops->stat(km, p->rel, &ks)) < 0)
            return r;
        if (ks.is_dir)
            return dir_open(p, oflags);
    } else if (!need_get && (r = ops->parent(km, p->rel)) < 0) {
        return r; /* a create where a local disk refuses it (no get tells us) */
    }
    if (need_get) {
        r = ops->get(km, p->rel, &v);
        if (r == -ENOENT) {
            if (ops->isdir(km, p->rel) == 1)
                return (oflags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL) ? -EEXIST
                                                                        : dir_open(p, oflags);
            if (!(oflags & O_CREAT))
                return -ENOENT;
            if ((r = ops->parent(km, p->rel)) < 0)
                return r;
            created = 1;
            v.rev = KV_REV_ABSENT;
            struct timespec now;
            clock_gettime(CLOCK_REALTIME, &now);
            v.mtime_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
        } else if (r < 0) {
            return r;
        } else if ((oflags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL)) {
            ops->release_value(&v);
            return -EEXIST;
        }
    }
    if (oflags & O_TRUNC)
        v.len = 0;

    int w = writable(oflags);
    /* What a commit can carry, known once bound (one request per bucket and process): a
     * write past it is EFBIG at the write. Unknown (0) when the server will not say: the
     * commit then finds out. */
    uint64_t max = 0;
    if (w && ops->limit(km, p->rel, &max) < 0)
        max = 0;
    struct shim_inode_init in = {
        .mount_idx = p->idx, .rel = p->rel, .owner = shim_pid(), .rev = v.rev,
        .mtime_ns = v.mtime_ns, .base_len = v.len, .based = w, .writers = w,
        .base_hash = w ? fdtable_hash(v.data, v.len, FDTABLE_HASH_SEED) : 0,
        .force = created || (oflags & O_TRUNC), .excl = (oflags & O_EXCL) != 0,
        .created = created,
    };
    int raced;
    ino = shim_inode_add(&in, &raced);
    if (!ino || raced) { /* raced: another thread opened it meanwhile: share its bytes */
        ops->release_value(&v);
        return ino ? open_shared(p, ino, oflags) : -ENOMEM;
    }
    struct shim_mem *mem = NULL;
    int fd = shim_mem_enabled() && !(how & SHIM_OPEN_KERNEL)
                 ? shim_mem_open(&v, ops, oflags, NULL, &mem) : -ENOSYS;
    if (mem && w)
        mem->max = (size_t)max; /* not shared yet: no lock needed */
    if (fd == -ENOSYS) /* a memfd from the start: asked for, or an in-memory file cannot be */
        fd = shim_buffer_open(v.data, v.len, oflags);
    ops->release_value(&v); /* an in-memory read-only file took it: then a no-op */
    if (fd < 0) {
        pthread_mutex_lock(&ino->mu);
        ino->force = ino->writers = 0; /* nothing to commit: the open failed */
        pthread_mutex_unlock(&ino->mu);
        shim_inode_close(ino, -1, NULL);
        shim_inode_put(ino);
        return fd;
    }
    log_at(LOG_DEBUG, "open %s (%s) rev %llu fd %d", p->rel, p->mount->path,
           (unsigned long long)v.rev, fd);
    return record(fd, ino, p->idx, oflags, mem);
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
        size_t n = strlen(path);
        if (n > 1 && path[n - 1] == '/')
            how |= OPEN_SLASH; /* resolution dropped the slash that names a directory */
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

int shim_commit(int fd, struct shim_file *f)
{
    if (f->is_dir || !f->ino)
        return 0;
    return shim_inode_commit(f->ino, fd, f->mem);
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
    int r = shim_commit(fd, f);
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
