/* meta.c: modes, owners and times on mount paths and descriptors. The bucket stores none of
 * them, so each call succeeds and changes nothing (SPEC "Operations"); a missing path is
 * ENOENT as on a local file system. Every variant forwards to one of two bodies: by path
 * (shim_resolve_existing) or by descriptor (meta_fd); everything else goes to libc. */
#include "shim/shim.h"

#include <sys/time.h>
#include <unistd.h>
#include <utime.h>

/* 1 when fd is a mount descriptor (nothing to do), else 0. */
static int meta_fd(int fd)
{
    return !shim_guard && fdtable_get(fd) != NULL;
}

/* A path call with an empty path and AT_EMPTY_PATH means the descriptor dirfd itself. */
static int meta_at(int dirfd, const char *path, int flags, struct shim_path *p)
{
    if (path && !*path && (flags & AT_EMPTY_PATH) && meta_fd(dirfd)) {
        p->local = path;
        return 1;
    }
    return shim_resolve_existing(dirfd, path, p);
}

SHIM_EXPORT int fchmodat(int dirfd, const char *path, mode_t mode, int flags)
{
    struct shim_path p;
    int r = meta_at(dirfd, path, flags, &p);
    if (r != 0)
        return r < 0 ? shim_fail(r) : 0;
    return real_fchmodat()(dirfd, p.local, mode, flags);
}

SHIM_EXPORT int chmod(const char *path, mode_t mode)
{
    return fchmodat(AT_FDCWD, path, mode, 0);
}

SHIM_EXPORT int fchmod(int fd, mode_t mode)
{
    return meta_fd(fd) ? 0 : real_fchmod()(fd, mode);
}

SHIM_EXPORT int fchownat(int dirfd, const char *path, uid_t uid, gid_t gid, int flags)
{
    struct shim_path p;
    int r = meta_at(dirfd, path, flags, &p);
    if (r != 0)
        return r < 0 ? shim_fail(r) : 0;
    return real_fchownat()(dirfd, p.local, uid, gid, flags);
}

SHIM_EXPORT int chown(const char *path, uid_t uid, gid_t gid)
{
    return fchownat(AT_FDCWD, path, uid, gid, 0);
}

SHIM_EXPORT int lchown(const char *path, uid_t uid, gid_t gid)
{
    return fchownat(AT_FDCWD, path, uid, gid, AT_SYMLINK_NOFOLLOW);
}

SHIM_EXPORT int fchown(int fd, uid_t uid, gid_t gid)
{
    return meta_fd(fd) ? 0 : real_fchown()(fd, uid, gid);
}

/* The headers call path nonnull, but a NULL path is allowed (the kernel's convention): keep
 * the compiler from assuming it away. */
static inline const char *maybe_null(const char *p)
{
    __asm__("" : "+r"(p));
    return p;
}

/* utimensat with a NULL path is futimens on dirfd (glibc's own convention). */
SHIM_EXPORT int utimensat(int dirfd, const char *path, const struct timespec times[2], int flags)
{
    if (!maybe_null(path))
        return meta_fd(dirfd) ? 0 : real_utimensat()(dirfd, path, times, flags);
    struct shim_path p;
    int r = meta_at(dirfd, path, flags, &p);
    if (r != 0)
        return r < 0 ? shim_fail(r) : 0;
    return real_utimensat()(dirfd, p.local, times, flags);
}

SHIM_EXPORT int futimens(int fd, const struct timespec times[2])
{
    return meta_fd(fd) ? 0 : real_futimens()(fd, times);
}

/* The timeval and utimbuf variants: the same question, then libc's own function. */
SHIM_EXPORT int utime(const char *path, const struct utimbuf *times)
{
    struct shim_path p;
    int r = shim_resolve_existing(AT_FDCWD, path, &p);
    if (r != 0)
        return r < 0 ? shim_fail(r) : 0;
    return real_utime()(p.local, times);
}

SHIM_EXPORT int utimes(const char *path, const struct timeval times[2])
{
    struct shim_path p;
    int r = shim_resolve_existing(AT_FDCWD, path, &p);
    if (r != 0)
        return r < 0 ? shim_fail(r) : 0;
    return real_utimes()(p.local, times);
}

SHIM_EXPORT int lutimes(const char *path, const struct timeval times[2])
{
    struct shim_path p;
    int r = shim_resolve_existing(AT_FDCWD, path, &p);
    if (r != 0)
        return r < 0 ? shim_fail(r) : 0;
    return real_lutimes()(p.local, times);
}

SHIM_EXPORT int futimesat(int dirfd, const char *path, const struct timeval times[2])
{
    if (!maybe_null(path))
        return meta_fd(dirfd) ? 0 : real_futimesat()(dirfd, path, times);
    struct shim_path p;
    int r = shim_resolve_existing(dirfd, path, &p);
    if (r != 0)
        return r < 0 ? shim_fail(r) : 0;
    return real_futimesat()(dirfd, p.local, times);
}

SHIM_EXPORT int futimes(int fd, const struct timeval times[2])
{
    return meta_fd(fd) ? 0 : real_futimes()(fd, times);
}
