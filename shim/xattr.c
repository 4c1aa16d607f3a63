/* xattr.c: the extended attributes of mount paths. There is one, "user.asya.version": the
 * key's current revision on the server, in decimal, read fresh on every call (it never
 * changes what the next commit expects). It is read-only; no other name exists. */
#include "shim/shim.h"

#include "shim/inode.h"

#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>

#define VERSION_ATTR "user.asya.version"

/* Where an xattr call lands: a mount path, a mount descriptor, or libc. */
struct target {
    int idx;
    const char *rel;
    struct shim_path p;
};

/* 1 when (path or fd) is ours (t filled), 0 for libc, or a negative errno. */
static int target_of(const char *path, int fd, struct target *t)
{
    t->p.local = path; /* what libc gets for a local path (absolute under a virtual cwd) */
    if (shim_guard || shim_foreign(path))
        return 0;
    if (!path) {
        struct shim_file *f = fdtable_get(fd);
        if (!f)
            return 0;
        t->idx = f->mount_idx;
        t->rel = shim_file_rel(f);
        return 1;
    }
    int r = shim_resolve(AT_FDCWD, path, &t->p);
    if (r == 1) {
        t->idx = t->p.idx;
        t->rel = t->p.rel;
    }
    return r;
}

/* The revision of the target's key, fresh from the server. A directory has none. */
static int version_of(const struct target *t, uint64_t *rev)
{
    if (!*t->rel)
        return -ENODATA; /* the mount root: a directory, no key */
    const kv_ops *ops;
    kv_mount *km;
    shim_enter();
    int r = shim_backend(t->idx, &ops, &km);
    if (r == 0)
        r = ops->version(km, t->rel, rev);
    if (r == -ENOENT) {
        /* a file created by an open still open here, not committed yet: no revision yet */
        struct shim_inode *ino = shim_inode_find(t->idx, t->rel);
        kv_stat ks;
        if (ino || (ops->stat(km, t->rel, &ks) == 0 && ks.is_dir))
            r = -ENODATA;
        if (ino)
            shim_inode_put(ino);
    }
    shim_leave();
    return r;
}

static ssize_t copy_out(const char *s, size_t len, void *buf, size_t size)
{
    if (size == 0)
        return (ssize_t)len;
    if (size < len)
        return shim_fail(-ERANGE);
    memcpy(buf, s, len);
    return (ssize_t)len;
}

static ssize_t get_body(const char *path, int fd, const char *name, void *value, size_t size,
                        int follow)
{
    struct target t;
    int r = target_of(path, fd, &t);
    if (r == 0)
        return !path ? real_fgetxattr()(fd, name, value, size)
             : follow ? real_getxattr()(t.p.local, name, value, size)
                      : real_lgetxattr()(t.p.local, name, value, size);
    uint64_t rev = 0;
    if (r == 1)
        r = version_of(&t, &rev);
    if (r == 0 && strcmp(name, VERSION_ATTR) != 0)
        r = -ENODATA;
    if (r < 0)
        return shim_fail(r);
    char dec[24];
    int n = snprintf(dec, sizeof dec, "%llu", (unsigned long long)rev);
    return copy_out(dec, (size_t)n, value, size);
}

static ssize_t list_body(const char *path, int fd, char *list, size_t size, int follow)
{
    struct target t;
    int r = target_of(path, fd, &t);
    if (r == 0)
        return !path ? real_flistxattr()(fd, list, size)
             : follow ? real_listxattr()(t.p.local, list, size)
                      : real_llistxattr()(t.p.local, list, size);
    uint64_t rev;
    if (r == 1)
        r = version_of(&t, &rev);
    if (r == -ENODATA)
        return 0; /* a directory: no attributes */
    if (r < 0)
        return shim_fail(r);
    return copy_out(VERSION_ATTR, sizeof VERSION_ATTR, list, size);
}

/* setxattr and removexattr: the version is read-only, and no other attribute can exist.
 * 0 for libc (*local is the path it gets), or the negative errno of a mount target (ENOENT
 * for a missing key). */
static int set_body(const char *path, int fd, const char *name, const char **local)
{
    struct target t;
    int r = target_of(path, fd, &t);
    *local = t.p.local;
    if (r <= 0)
        return r;
    uint64_t rev;
    r = version_of(&t, &rev);
    if (r < 0 && r != -ENODATA)
        return r;
    return strcmp(name, VERSION_ATTR) == 0 ? -EPERM : -ENOTSUP;
}

SHIM_EXPORT ssize_t getxattr(const char *path, const char *name, void *value, size_t size)
{
    return get_body(path, -1, name, value, size, 1);
}

SHIM_EXPORT ssize_t lgetxattr(const char *path, const char *name, void *value, size_t size)
{
    return get_body(path, -1, name, value, size, 0);
}

SHIM_EXPORT ssize_t fgetxattr(int fd, const char *name, void *value, size_t size)
{
    return get_body(NULL, fd, name, value, size, 1);
}

SHIM_EXPORT ssize_t listxattr(const char *path, char *list, size_t size)
{
    return list_body(path, -1, list, size, 1);
}

SHIM_EXPORT ssize_t llistxattr(const char *path, char *list, size_t size)
{
    return list_body(path, -1, list, size, 0);
}

SHIM_EXPORT ssize_t flistxattr(int fd, char *list, size_t size)
{
    return list_body(NULL, fd, list, size, 1);
}

SHIM_EXPORT int setxattr(const char *path, const char *name, const void *value, size_t size, int flags)
{
    const char *lp;
    int r = set_body(path, -1, name, &lp);
    return r < 0 ? shim_fail(r) : real_setxattr()(lp, name, value, size, flags);
}

SHIM_EXPORT int lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags)
{
    const char *lp;
    int r = set_body(path, -1, name, &lp);
    return r < 0 ? shim_fail(r) : real_lsetxattr()(lp, name, value, size, flags);
}

SHIM_EXPORT int fsetxattr(int fd, const char *name, const void *value, size_t size, int flags)
{
    const char *lp;
    int r = set_body(NULL, fd, name, &lp);
    return r < 0 ? shim_fail(r) : real_fsetxattr()(fd, name, value, size, flags);
}

SHIM_EXPORT int removexattr(const char *path, const char *name)
{
    const char *lp;
    int r = set_body(path, -1, name, &lp);
    return r < 0 ? shim_fail(r) : real_removexattr()(lp, name);
}

SHIM_EXPORT int lremovexattr(const char *path, const char *name)
{
    const char *lp;
    int r = set_body(path, -1, name, &lp);
    return r < 0 ? shim_fail(r) : real_lremovexattr()(lp, name);
}

SHIM_EXPORT int fremovexattr(int fd, const char *name)
{
    const char *lp;
    int r = set_body(NULL, fd, name, &lp);
    return r < 0 ? shim_fail(r) : real_fremovexattr()(fd, name);
}
