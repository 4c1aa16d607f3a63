/* names.c: calls that change or create names on mount paths: rename (write the destination,
 * guarded by its remembered revision, then delete the source; EXDEV across mounts or to or
 * from local files, so mv and shutil.move copy instead; a directory is renamed by the
 * program's copy fallback too: EXDEV), remove, truncate (get, cut, commit), the mkstemp
 * family and mkdtemp (names created exclusively, through the open path), and the names a
 * key-value store cannot hold: symlink, link, mknod, mkfifo (ENOTSUP) and readlink (EINVAL:
 * nothing on a mount is a link). tmpfile() has no name and stays local. */
#include "shim/shim.h"

#include "shim/inode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

int shim_remove_value(const kv_ops *ops, kv_mount *km, int idx, const char *rel)
{
    /* an open file of that name is discarded at its last close, never resurrected */
    int fresh = shim_inode_unlink(idx, rel);
    int r = ops->remove(km, rel);
    return r == -ENOENT && fresh ? 0 : r; /* created here, never committed: gone now */
}

/* Renames a value within one mount. 0 or -errno. */
static int rename_mount(const struct shim_path *from, const struct shim_path *to,
                        unsigned flags)
{
    if (!*from->rel || !*to->rel)
        return -EBUSY;
    if (flags & ~RENAME_NOREPLACE)
        return -EINVAL; /* RENAME_EXCHANGE, RENAME_WHITEOUT: not on a key-value store */
    const kv_ops *ops;
    kv_mount *km;
    kv_stat ks;
    kv_value v = { 0 };
    shim_enter();
    int r = shim_backend(from->idx, &ops, &km);
    if (r == 0 && strcmp(from->rel, to->rel) == 0) {
        r = shim_mount_stat(from->idx, from->rel, &ks);
        shim_leave();
        return r; /* the same name: nothing to do, as rename(2) */
    }
    /* A file created by an open still open here is not on the server, and one truncated
     * by its open (O_TRUNC, not read: the key may be absent) holds nothing the server has:
     * it is renamed here, and commits under its new name, replacing what the destination
     * holds then; a truncated one's old value under the old name is deleted. */
    struct shim_inode *ino = r == 0 ? shim_inode_find(from->idx, from->rel) : NULL;
    int fresh = 0, truncated = 0;
    if (ino) {
        pthread_mutex_lock(&ino->mu);
        fresh = ino->created;
        truncated = !fresh && ino->force;
        pthread_mutex_unlock(&ino->mu);
        shim_inode_put(ino);
    }
    if (fresh || truncated) {
        r = ops->stat(km, to->rel, &ks);
        if (r == 0 && ks.is_dir)
            r = -EISDIR;
        else if (r == 0 && (flags & RENAME_NOREPLACE))
            r = -EEXIST;
        uint64_t rev_to = r == 0 ? ks.rev : KV_REV_ABSENT;
        if ((r == 0 || r == -ENOENT) && truncated) {
            r = ops->remove(km, from->rel);
            r = r == -ENOENT ? 0 : r;
        }
        if (r == 0 || r == -ENOENT)
            r = shim_inode_rename(from->idx, from->rel, to->rel, rev_to, 0);
        shim_leave();
        return r < 0 ? r : 0;
    }
    if (r == 0)
        r = ops->stat(km, from->rel, &ks);
    if (r == 0 && ks.is_dir)
        r = -EXDEV; /* key by key is the program's copy fallback (mv, shutil.move) */
    if (r == 0 && ops->stat(km, to->rel, &ks) == 0 && ks.is_dir)
        r = -EISDIR;
    if (r == 0)
        r = ops->get(km, from->rel, &v);
    uint64_t rev = 0, copied = r == 0 ? v.rev : 0;
    if (r == 0) {
        r = ops->commit(km, to->rel, v.data, v.len,
                        (flags & RENAME_NOREPLACE) ? KV_COMMIT_EXCL : 0, &rev);
        ops->release_value(&v);
    }
    if (r == 0) {
        r = ops->remove(km, from->rel);
        if (r == -ENOENT)
            r = 0; /* deleted meanwhile by another writer: the destination holds the value */
    }
    if (r == 0) /* an open file follows its name; one open as the destination is replaced */
        r = shim_inode_rename(from->idx, from->rel, to->rel, rev, copied);
    shim_leave();
    return r < 0 ? r : 0;
}

/* The one body of rename, renameat and renameat2. */
static int rename_body(int olddirfd, const char *old, int newdirfd, const char *new,
                       unsigned flags)
{
    if (!shim_guard) {
        struct shim_path from, to;
        int rf = shim_resolve(olddirfd, old, &from);
        int rt = rf < 0 ? 0 : shim_resolve(newdirfd, new, &to);
        if (rf < 0 || rt < 0)
            return shim_fail(rf < 0 ? rf : rt);
        if (rf == 1 && rt == 1 && from.idx == to.idx) {
            int r = rename_mount(&from, &to, flags);
            return r < 0 ? shim_fail(r) : 0;
        }
        if (rf == 1 || rt == 1)
            return shim_fail(-EXDEV);
        if (from.local != old || to.local != new)
            return real_renameat2()(olddirfd, from.local, newdirfd, to.local, flags);
    }
    if (flags)
        return real_renameat2()(olddirfd, old, newdirfd, new, flags);
    return real_renameat()(olddirfd, old, newdirfd, new);
}

SHIM_EXPORT int rename(const char *old, const char *new)
{
    return rename_body(AT_FDCWD, old, AT_FDCWD, new, 0);
}

SHIM_EXPORT int renameat(int olddirfd, const char *old, int newdirfd, const char *new)
{
    return rename_body(olddirfd, old, newdirfd, new, 0);
}

SHIM_EXPORT int renameat2(int olddirfd, const char *old, int newdirfd, const char *new,
                          unsigned int flags)
{
    return rename_body(olddirfd, old, newdirfd, new, flags);
}

/* remove: rmdir for a directory, unlink for a value (glibc's own calls its internal ones). */
SHIM_EXPORT int remove(const char *path)
{
    if (!shim_guard) {
        struct shim_path p;
        int r = shim_resolve(AT_FDCWD, path, &p);
        if (r < 0)
            return shim_fail(r);
        if (r == 1) {
            if (!*p.rel)
                return shim_fail(-EBUSY);
            const kv_ops *ops;
            kv_mount *km;
            kv_stat ks;
            shim_enter();
            r = shim_backend(p.idx, &ops, &km);
            if (r == 0)
                r = ops->stat(km, p.rel, &ks);
            if (r == 0)
                r = ks.is_dir ? ops->rmdir(km, p.rel) : shim_remove_value(ops, km, p.idx, p.rel);
            shim_leave();
            return r < 0 ? shim_fail(r) : 0;
        }
        if (p.local != path)
            return real_remove()(p.local);
    }
    return real_remove()(path);
}

/* truncate on a mount: a file open here is cut in place, as a disk's inode is (its last
 * close commits it); else the value cut (or zero-extended) to len and committed, guarded by
 * the revision just read. */
static int truncate_mount(const struct shim_path *p, off_t len)
{
    if (len < 0)
        return -EINVAL;
    const kv_ops *ops;
    kv_mount *km;
    kv_value v = { 0 };
    kv_stat ks;
    struct shim_inode *ino = shim_inode_find(p->idx, p->rel);
    if (ino) {
        int r = shim_inode_truncate(ino, len);
        shim_inode_put(ino);
        return r;
    }
    shim_enter();
    int r = shim_backend(p->idx, &ops, &km);
    if (r == 0) {
        r = ops->get(km, p->rel, &v);
        if (r == -ENOENT && ops->stat(km, p->rel, &ks) == 0 && ks.is_dir)
            r = -EISDIR;
    }
    if (r == 0 && (size_t)len != v.len) {
        char *buf = calloc(1, (size_t)len ? (size_t)len : 1);
        r = buf ? 0 : -ENOMEM;
        if (r == 0) {
            memcpy(buf, v.data, (size_t)len < v.len ? (size_t)len : v.len);
            r = ops->commit(km, p->rel, buf, (size_t)len, 0, NULL);
            free(buf);
        }
    }
    ops->release_value(&v);
    shim_leave();
    return r;
}

/* The one body of truncate and truncate64 (off_t is 64-bit here). */
static int truncate_body(const char *path, off_t len)
{
    if (!shim_guard) {
        struct shim_path p;
        int r = shim_resolve(AT_FDCWD, path, &p);
        if (r < 0)
            return shim_fail(r);
        if (r == 1) {
            r = *p.rel ? truncate_mount(&p, len) : -EISDIR;
            return r < 0 ? shim_fail(r) : 0;
        }
        if (p.local != path)
            return real_truncate()(p.local, len);
    }
    return real_truncate()(path, len);
}

SHIM_EXPORT int truncate(const char *path, off_t len)
{
    return truncate_body(path, len);
}

SHIM_EXPORT int truncate64(const char *path, off64_t len)
{
    return truncate_body(path, (off_t)len);
}

/* Six letters or digits for a temporary name, without touching rand()'s sequence. */
static void fill_random(char *x)
{
    static const char chars[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    uint64_t v;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        v = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)shim_pid() << 32 ^
            (uint64_t)(uintptr_t)x;
    }
    for (int i = 0; i < 6; i++) {
        x[i] = chars[v % (sizeof chars - 1)];
        v /= sizeof chars - 1;
    }
}

#define TEMP_TRIES 100

enum temp_kind { TEMP_FILE, TEMP_DIR, TEMP_NAME };

/* Creates a unique name from tmpl (its six X before suffixlen bytes replaced) on a mount:
 * a file opened O_EXCL through the open path (returns the descriptor), a directory, or (for
 * mktemp) only a name that does not exist yet (both return 0). -errno on failure. */
static int temp_mount(char *tmpl, int suffixlen, int flags, enum temp_kind kind)
{
    size_t len = strlen(tmpl);
    if (suffixlen < 0 || len < 6 + (size_t)suffixlen)
        return -EINVAL;
    char *x = tmpl + len - suffixlen - 6;
    if (memcmp(x, "XXXXXX", 6) != 0)
        return -EINVAL;
    for (int i = 0; i < TEMP_TRIES; i++) {
        fill_random(x);
        int r;
        if (kind == TEMP_NAME) {
            struct shim_path p;
            r = shim_resolve_existing(AT_FDCWD, tmpl, &p);
            r = r == -ENOENT ? 0 : r == 1 ? -EEXIST : r == 0 ? -EIO : r;
        } else if (kind == TEMP_DIR) {
            struct shim_path p;
            const kv_ops *ops;
            kv_mount *km;
            r = shim_resolve(AT_FDCWD, tmpl, &p);
            if (r == 1) {
                shim_enter();
                r = shim_backend(p.idx, &ops, &km);
                if (r == 0)
                    r = ops->mkdir(km, p.rel);
                shim_leave();
            } else if (r == 0) {
                r = -EIO; /* the template changed mounts: cannot happen */
            }
        } else {
            int oflags = O_RDWR | O_CREAT | O_EXCL | (flags & ~O_ACCMODE);
            r = shim_open(AT_FDCWD, tmpl, oflags, 0600, 0);
        }
        if (r != -EEXIST)
            return r;
    }
    memcpy(x, "XXXXXX", 6);
    return -EEXIST;
}

/* 1 when tmpl names a place on a mount (its name is made there), 0 for libc, or -errno. */
static int temp_on_mount(const char *tmpl)
{
    if (shim_guard)
        return 0;
    struct shim_path p;
    return shim_resolve(AT_FDCWD, tmpl, &p);
}

/* The one body of the mkstemp family; real is called for local templates. */
static int mkstemp_body(char *tmpl, int suffixlen, int flags, int (*real)(char *, int, int))
{
    int r = temp_on_mount(tmpl);
    if (r == 0)
        return real(tmpl, suffixlen, flags);
    if (r == 1)
        r = temp_mount(tmpl, suffixlen, flags, TEMP_FILE);
    return r < 0 ? shim_fail(r) : r;
}

/* libc's mkostemps64 does what every variant does (flags and suffix 0 where absent). */
static int real_temp(char *tmpl, int suffixlen, int flags)
{
    return real_mkostemps64()(tmpl, suffixlen, flags);
}

SHIM_EXPORT int mkstemp(char *tmpl)
{
    return mkstemp_body(tmpl, 0, 0, real_temp);
}

SHIM_EXPORT int mkstemp64(char *tmpl)
{
    return mkstemp_body(tmpl, 0, 0, real_temp);
}

SHIM_EXPORT int mkstemps(char *tmpl, int suffixlen)
{
    return mkstemp_body(tmpl, suffixlen, 0, real_temp);
}

SHIM_EXPORT int mkstemps64(char *tmpl, int suffixlen)
{
    return mkstemp_body(tmpl, suffixlen, 0, real_temp);
}

SHIM_EXPORT int mkostemp(char *tmpl, int flags)
{
    return mkstemp_body(tmpl, 0, flags, real_temp);
}

SHIM_EXPORT int mkostemp64(char *tmpl, int flags)
{
    return mkstemp_body(tmpl, 0, flags, real_temp);
}

SHIM_EXPORT int mkostemps(char *tmpl, int suffixlen, int flags)
{
    return mkstemp_body(tmpl, suffixlen, flags, real_temp);
}

SHIM_EXPORT int mkostemps64(char *tmpl, int suffixlen, int flags)
{
    return mkstemp_body(tmpl, suffixlen, flags, real_temp);
}

SHIM_EXPORT char *mkdtemp(char *tmpl)
{
    int r = temp_on_mount(tmpl);
    if (r == 0)
        return real_mkdtemp()(tmpl);
    if (r == 1)
        r = temp_mount(tmpl, 0, 0, TEMP_DIR);
    if (r < 0) {
        errno = -r;
        return NULL;
    }
    return tmpl;
}

/* mktemp only chooses a name: on a mount, one that is not a key (checked on the server). */
SHIM_EXPORT char *mktemp(char *tmpl)
{
    int r = temp_on_mount(tmpl);
    if (r == 0)
        return real_mktemp()(tmpl);
    if (r == 1)
        r = temp_mount(tmpl, 0, 0, TEMP_NAME);
    if (r < 0) {
        tmpl[0] = '\0'; /* as glibc's mktemp reports failure */
        errno = -r;
    }
    return tmpl;
}

/* 1 when (dirfd, path) is a mount path (p filled), 0 local, -errno. No request. */
static int names_mount(int dirfd, const char *path, struct shim_path *p)
{
    p->local = path;
    return shim_guard ? 0 : shim_resolve(dirfd, path, p);
}

SHIM_EXPORT int symlinkat(const char *target, int dirfd, const char *path)
{
    struct shim_path p;
    int r = names_mount(dirfd, path, &p);
    if (r != 0)
        return shim_fail(r < 0 ? r : -ENOTSUP);
    return real_symlinkat()(target, dirfd, p.local);
}

SHIM_EXPORT int symlink(const char *target, const char *path)
{
    return symlinkat(target, AT_FDCWD, path);
}

SHIM_EXPORT int linkat(int olddirfd, const char *old, int newdirfd, const char *new, int flags)
{
    struct shim_path from = { .local = old }, to;
    int rf = (flags & AT_EMPTY_PATH) && !*old && fdtable_get(olddirfd) ? 1
             : names_mount(olddirfd, old, &from);
    int rt = names_mount(newdirfd, new, &to);
    if (rf < 0 || rt < 0)
        return shim_fail(rf < 0 ? rf : rt);
    if (rf == 1 || rt == 1)
        return shim_fail(-ENOTSUP);
    return real_linkat()(olddirfd, from.local, newdirfd, to.local, flags);
}

SHIM_EXPORT int link(const char *old, const char *new)
{
    return linkat(AT_FDCWD, old, AT_FDCWD, new, 0);
}

SHIM_EXPORT int mknodat(int dirfd, const char *path, mode_t mode, dev_t dev)
{
    struct shim_path p;
    int r = names_mount(dirfd, path, &p);
    if (r != 0)
        return shim_fail(r < 0 ? r : -ENOTSUP);
    return real_mknodat()(dirfd, p.local, mode, dev);
}

SHIM_EXPORT int mknod(const char *path, mode_t mode, dev_t dev)
{
    return mknodat(AT_FDCWD, path, mode, dev);
}

SHIM_EXPORT int __xmknod(int ver, const char *path, mode_t mode, dev_t *dev)
{
    (void)ver;
    return mknodat(AT_FDCWD, path, mode, *dev);
}

SHIM_EXPORT int __xmknodat(int ver, int dirfd, const char *path, mode_t mode, dev_t *dev)
{
    (void)ver;
    return mknodat(dirfd, path, mode, *dev);
}

SHIM_EXPORT int mkfifoat(int dirfd, const char *path, mode_t mode)
{
    struct shim_path p;
    int r = names_mount(dirfd, path, &p);
    if (r != 0)
        return shim_fail(r < 0 ? r : -ENOTSUP);
    return real_mkfifoat()(dirfd, p.local, mode);
}

SHIM_EXPORT int mkfifo(const char *path, mode_t mode)
{
    return mkfifoat(AT_FDCWD, path, mode);
}

/* The one body of readlink and its variants: no mount path is a link. */
static ssize_t readlink_body(int dirfd, const char *path, char *buf, size_t size)
{
    struct shim_path p;
    int r = shim_resolve_existing(dirfd, path, &p);
    if (r != 0)
        return shim_fail(r < 0 ? r : -EINVAL);
    return real_readlinkat()(dirfd, p.local, buf, size);
}

SHIM_EXPORT ssize_t readlink(const char *path, char *buf, size_t size)
{
    return readlink_body(AT_FDCWD, path, buf, size);
}

SHIM_EXPORT ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t size)
{
    return readlink_body(dirfd, path, buf, size);
}

SHIM_EXPORT ssize_t __readlink_chk(const char *path, char *buf, size_t size, size_t buflen)
{
    return readlink_body(AT_FDCWD, path, buf, size < buflen ? size : buflen);
}

SHIM_EXPORT ssize_t __readlinkat_chk(int dirfd, const char *path, char *buf, size_t size,
                                     size_t buflen)
{
    return readlink_body(dirfd, path, buf, size < buflen ? size : buflen);
}
