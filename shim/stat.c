/* stat.c: the stat family and access on mount paths, and the fstat fix-up of mount
 * descriptors, so that fstat of an open mount file agrees with stat of its path (st_dev,
 * st_ino, mode). Every variant forwards to one body; everything else goes to libc. */
#include "shim/shim.h"

#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "shim/inode.h"
#include "shim/mem.h"

_Static_assert(sizeof(struct stat) == sizeof(struct stat64), "stat and stat64 differ");

/* Stats a mount path through the backend. */
static int stat_mount(const struct shim_path *p, struct stat *st)
{
    kv_stat ks;
    int r = shim_mount_stat(p->idx, p->rel, &ks);
    if (r == 0)
        shim_fill_stat(st, p->idx, p->rel, &ks);
    return r;
}

/* Rewrites what the kernel said of a mount descriptor's memfd (or "/" for a directory). */
static void fixup(const struct shim_file *f, struct stat *st)
{
    st->st_dev = shim_dev(f->mount_idx);
    st->st_ino = shim_ino(f->mount_idx, shim_file_rel(f));
    st->st_mode = f->is_dir ? (S_IFDIR | 0755) : (S_IFREG | 0644);
    st->st_nlink = f->is_dir ? 2 : 1;
    struct stat mine;
    shim_owner(&mine); /* the kernel answered for a memfd or for "/" */
    st->st_uid = mine.st_uid;
    st->st_gid = mine.st_gid;
    int64_t mtime_ns = f->ino ? __atomic_load_n(&f->ino->mtime_ns, __ATOMIC_RELAXED) : 0;
    if (mtime_ns) {
        /* the revision's time, as stat of the path gives (until the next commit) */
        st->st_mtim.tv_sec = mtime_ns / 1000000000;
        st->st_mtim.tv_nsec = mtime_ns % 1000000000;
        st->st_atim = st->st_mtim;
        st->st_ctim = st->st_mtim;
    }
    if (f->is_dir) {
        st->st_size = 0;
        st->st_blocks = 0;
    }
}

static int fstat_body(int fd, struct stat *st)
{
    int r = real_fstat()(fd, st);
    struct shim_file *f = shim_guard ? NULL : fdtable_get(fd);
    if (r == 0 && f) {
        fixup(f, st);
        size_t len;
        if (f->mem && shim_mem_size(fd, &len)) { /* the kernel saw the placeholder */
            st->st_size = (off_t)len;
            st->st_blocks = (blkcnt_t)((len + 511) / 512);
        }
    }
    return r;
}

/* The one body of stat, lstat, fstatat and their variants. */
/* stat_body for a path that may be on a mount (kept apart: its frame holds a path buffer). */
static __attribute__((noinline)) int stat_resolved(int dirfd, const char *path,
                                                  struct stat *st, int flags)
{
    if (path && !*path && (flags & AT_EMPTY_PATH) && fdtable_get(dirfd))
        return fstat_body(dirfd, st);
    struct shim_path p;
    int r = shim_resolve(dirfd, path, &p);
    if (r < 0)
        return shim_fail(r);
    if (r == 1) {
        r = stat_mount(&p, st);
        return r < 0 ? shim_fail(r) : 0;
    }
    return real_fstatat()(dirfd, p.local, st, flags);
}

static int stat_body(int dirfd, const char *path, struct stat *st, int flags)
{
    if (!shim_guard && !shim_foreign(path))
        return stat_resolved(dirfd, path, st, flags);
    return real_fstatat()(dirfd, path, st, flags);
}

SHIM_EXPORT int stat(const char *path, struct stat *st)
{
    return stat_body(AT_FDCWD, path, st, 0);
}

SHIM_EXPORT int stat64(const char *path, struct stat64 *st)
{
    return stat_body(AT_FDCWD, path, (struct stat *)st, 0);
}

SHIM_EXPORT int lstat(const char *path, struct stat *st)
{
    return stat_body(AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW);
}

SHIM_EXPORT int lstat64(const char *path, struct stat64 *st)
{
    return stat_body(AT_FDCWD, path, (struct stat *)st, AT_SYMLINK_NOFOLLOW);
}

SHIM_EXPORT int fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
    return stat_body(dirfd, path, st, flags);
}

SHIM_EXPORT int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags)
{
    return stat_body(dirfd, path, (struct stat *)st, flags);
}

SHIM_EXPORT int fstat(int fd, struct stat *st)
{
    return fstat_body(fd, st);
}

SHIM_EXPORT int fstat64(int fd, struct stat64 *st)
{
    return fstat_body(fd, (struct stat *)st);
}

/* The pre-2.33 entry points: ver is _STAT_VER, the same layout on x86_64. */
SHIM_EXPORT int __xstat(int ver, const char *path, struct stat *st)
{
    (void)ver;
    return stat_body(AT_FDCWD, path, st, 0);
}

SHIM_EXPORT int __xstat64(int ver, const char *path, struct stat64 *st)
{
    (void)ver;
    return stat_body(AT_FDCWD, path, (struct stat *)st, 0);
}

SHIM_EXPORT int __lxstat(int ver, const char *path, struct stat *st)
{
    (void)ver;
    return stat_body(AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW);
}

SHIM_EXPORT int __lxstat64(int ver, const char *path, struct stat64 *st)
{
    (void)ver;
    return stat_body(AT_FDCWD, path, (struct stat *)st, AT_SYMLINK_NOFOLLOW);
}

SHIM_EXPORT int __fxstat(int ver, int fd, struct stat *st)
{
    (void)ver;
    return fstat_body(fd, st);
}

SHIM_EXPORT int __fxstat64(int ver, int fd, struct stat64 *st)
{
    (void)ver;
    return fstat_body(fd, (struct stat *)st);
}

SHIM_EXPORT int __fxstatat(int ver, int dirfd, const char *path, struct stat *st, int flags)
{
    (void)ver;
    return stat_body(dirfd, path, st, flags);
}

SHIM_EXPORT int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *st, int flags)
{
    (void)ver;
    return stat_body(dirfd, path, (struct stat *)st, flags);
}

static void stat_to_statx(const struct stat *st, struct statx *stx)
{
    memset(stx, 0, sizeof *stx);
    stx->stx_mask = STATX_BASIC_STATS;
    /* every caller's st was filled by real_fstat (a pointer the analyzer cannot follow) or
     * shim_fill_stat: NOLINTNEXTLINE(clang-analyzer-core.uninitialized.Assign) */
    stx->stx_blksize = (uint32_t)st->st_blksize;
    stx->stx_nlink = (uint32_t)st->st_nlink;
    stx->stx_uid = st->st_uid;
    stx->stx_gid = st->st_gid;
    stx->stx_mode = (uint16_t)st->st_mode;
    stx->stx_ino = st->st_ino;
    stx->stx_size = (uint64_t)st->st_size;
    stx->stx_blocks = (uint64_t)st->st_blocks;
    stx->stx_atime = (struct statx_timestamp){ st->st_atim.tv_sec, (uint32_t)st->st_atim.tv_nsec, 0 };
    stx->stx_mtime = (struct statx_timestamp){ st->st_mtim.tv_sec, (uint32_t)st->st_mtim.tv_nsec, 0 };
    stx->stx_ctime = stx->stx_mtime;
    stx->stx_dev_major = major(st->st_dev);
    stx->stx_dev_minor = minor(st->st_dev);
}

/* The body of statx, also reached from syscall(SYS_statx): path may be NULL there (Linux
 * 6.11 takes NULL with AT_EMPTY_PATH), which the libc prototype does not allow. */
int shim_statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *stx)
{
    if (!shim_guard && !shim_foreign(path)) {
        struct shim_file *f = ((!path || !*path) && (flags & AT_EMPTY_PATH)) ? fdtable_get(dirfd) : NULL;
        struct shim_path p;
        int r = f ? 1 : shim_resolve(dirfd, path, &p);
        if (r < 0)
            return shim_fail(r);
        if (r == 1) {
            struct stat st;
            r = f ? (fstat_body(dirfd, &st) < 0 ? -errno : 0) : stat_mount(&p, &st);
            if (r < 0)
                return shim_fail(r);
            stat_to_statx(&st, stx);
            return 0;
        }
        if (!f && p.local != path)
            return real_statx()(dirfd, p.local, flags, mask, stx);
    }
    return real_statx()(dirfd, path, flags, mask, stx);
}

SHIM_EXPORT int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *stx)
{
    return shim_statx(dirfd, path, flags, mask, stx);
}

/* The one body of access and its variants: a mount path exists or not; no file of a mount
 * is executable. */
static int access_body(int dirfd, const char *path, int mode, int flags)
{
    if (!shim_guard && !shim_foreign(path)) {
        struct shim_path p;
        int r = shim_resolve(dirfd, path, &p);
        if (r < 0)
            return shim_fail(r);
        if (r == 1) {
            struct stat st;
            r = stat_mount(&p, &st);
            if (r == 0 && (mode & X_OK) && !S_ISDIR(st.st_mode))
                r = -EACCES;
            return r < 0 ? shim_fail(r) : 0;
        }
        if (p.local != path)
            return real_faccessat()(dirfd, p.local, mode, flags);
    }
    return real_faccessat()(dirfd, path, mode, flags);
}

SHIM_EXPORT int access(const char *path, int mode)
{
    return access_body(AT_FDCWD, path, mode, 0);
}

SHIM_EXPORT int faccessat(int dirfd, const char *path, int mode, int flags)
{
    return access_body(dirfd, path, mode, flags);
}

SHIM_EXPORT int euidaccess(const char *path, int mode)
{
    return access_body(AT_FDCWD, path, mode, AT_EACCESS);
}

SHIM_EXPORT int eaccess(const char *path, int mode)
{
    return access_body(AT_FDCWD, path, mode, AT_EACCESS);
}
