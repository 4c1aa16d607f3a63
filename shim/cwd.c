/* cwd.c: the virtual working directory and canonical names. chdir (or fchdir to a mount
 * directory descriptor) into a mount directory makes it the working directory the shim
 * resolves relative paths against (state.c keeps it; the kernel's working directory is left
 * as it was); getcwd and its variants report it; chdir to a local directory goes back to the
 * kernel's. A program started from a virtual working directory finds it in ASYA_STATE_CWD
 * (set by the exec hooks, shim/process.c), restored here before main and removed from the
 * environment. realpath and canonicalize_file_name are lexical on mount paths (ENOENT when
 * the name does not exist on the mount). */
#include "shim/shim.h"

#include "shim/inode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CWD_ENV "ASYA_STATE_CWD"

/* Makes mount directory p the working directory. 0 or -errno. */
static int chdir_mount(const struct shim_path *p)
{
    char full[PATH_MAX];
    kv_stat ks;
    int r = shim_mount_stat(p->idx, p->rel, &ks);
    if (r == 0 && !ks.is_dir)
        r = -ENOTDIR;
    if (r == 0)
        r = shim_mount_path(p->idx, p->rel, full, sizeof full);
    if (r < 0)
        return r;
    shim_cwd_set_virtual(full);
    return 0;
}

SHIM_EXPORT int chdir(const char *path)
{
    if (!shim_guard) {
        struct shim_path p;
        int r = shim_resolve(AT_FDCWD, path, &p);
        if (r < 0)
            return shim_fail(r);
        if (r == 1) {
            r = chdir_mount(&p);
            return r < 0 ? shim_fail(r) : 0;
        }
        if (p.local != path) {
            r = real_chdir()(p.local);
            if (r == 0)
                shim_cwd_changed();
            return r;
        }
    }
    int r = real_chdir()(path);
    if (r == 0)
        shim_cwd_changed();
    return r;
}

SHIM_EXPORT int fchdir(int fd)
{
    struct shim_file *f = shim_guard ? NULL : fdtable_get(fd);
    if (f) {
        if (!f->is_dir)
            return shim_fail(-ENOTDIR);
        struct shim_path p = { .idx = f->mount_idx, .mount = shim_mount(f->mount_idx),
                               .rel = shim_file_rel(f) };
        char full[PATH_MAX];
        int r = shim_mount_path(p.idx, p.rel, full, sizeof full);
        if (r < 0)
            return shim_fail(r);
        shim_cwd_set_virtual(full);
        return 0;
    }
    int r = real_fchdir()(fd);
    if (r == 0)
        shim_cwd_changed();
    return r;
}

/* The one body of getcwd and __getcwd_chk: NULL buf allocates (size bytes, or just enough
 * when size is 0), as glibc does. 1 answered (*out set, or errno), 0 for libc. */
static int getcwd_virtual(char *buf, size_t size, char **out)
{
    char tmp[PATH_MAX];
    if (shim_guard || !shim_cwd_virtual())
        return 0;
    int r = shim_cwd_copy(tmp, sizeof tmp);
    if (r == 0)
        return 0; /* it became real meanwhile */
    size_t len = strlen(tmp);
    if (!buf) {
        size_t n = size ? size : len + 1;
        if (n < len + 1) {
            errno = ERANGE;
            *out = NULL;
            return 1;
        }
        buf = malloc(n);
        if (!buf) {
            errno = ENOMEM;
            *out = NULL;
            return 1;
        }
    } else if (size == 0) {
        errno = EINVAL;
        *out = NULL;
        return 1;
    } else if (size < len + 1) {
        errno = ERANGE;
        *out = NULL;
        return 1;
    }
    memcpy(buf, tmp, len + 1);
    *out = buf;
    return 1;
}

SHIM_EXPORT char *getcwd(char *buf, size_t size)
{
    char *out;
    return getcwd_virtual(buf, size, &out) ? out : real_getcwd()(buf, size);
}

SHIM_EXPORT char *__getcwd_chk(char *buf, size_t size, size_t buflen)
{
    char *out;
    if (size > buflen)
        return real___getcwd_chk()(buf, size, buflen); /* libc reports the overflow */
    return getcwd_virtual(buf, size, &out) ? out : real___getcwd_chk()(buf, size, buflen);
}

SHIM_EXPORT char *getwd(char *buf)
{
    char *out;
    return getcwd_virtual(buf, PATH_MAX, &out) ? out : real_getwd()(buf);
}

SHIM_EXPORT char *__getwd_chk(char *buf, size_t buflen)
{
    char *out;
    return getcwd_virtual(buf, buflen < PATH_MAX ? buflen : PATH_MAX, &out)
               ? out : real___getwd_chk()(buf, buflen);
}

SHIM_EXPORT char *get_current_dir_name(void)
{
    char *out;
    return getcwd_virtual(NULL, 0, &out) ? out : real_get_current_dir_name()();
}

/* realpath of a mount path: the lexical absolute path, when it exists on the mount. */
static int realpath_mount(const struct shim_path *p, char *resolved, char **out)
{
    char full[PATH_MAX];
    kv_stat ks;
    int r = shim_mount_stat(p->idx, p->rel, &ks);
    if (r == 0)
        r = shim_mount_path(p->idx, p->rel, full, sizeof full);
    if (r < 0)
        return r;
    if (!resolved && !(resolved = strdup(full)))
        return -ENOMEM;
    if (resolved != full)
        memcpy(resolved, full, strlen(full) + 1);
    *out = resolved;
    return 0;
}

/* The one body of realpath, __realpath_chk and canonicalize_file_name. */
static char *realpath_body(const char *path, char *resolved, size_t reslen, int chk)
{
    if (!shim_guard && path) {
        struct shim_path p;
        int r = shim_resolve(AT_FDCWD, path, &p);
        if (r < 0) {
            errno = -r;
            return NULL;
        }
        if (r == 1) {
            char *out = NULL;
            r = realpath_mount(&p, resolved, &out);
            if (r < 0)
                errno = -r;
            return out;
        }
        if (p.local != path)
            return chk ? real___realpath_chk()(p.local, resolved, reslen)
                       : real_realpath()(p.local, resolved);
    }
    return chk ? real___realpath_chk()(path, resolved, reslen) : real_realpath()(path, resolved);
}

SHIM_EXPORT char *realpath(const char *path, char *resolved)
{
    return realpath_body(path, resolved, PATH_MAX, 0);
}

SHIM_EXPORT char *__realpath_chk(const char *path, char *resolved, size_t resolvedlen)
{
    return realpath_body(path, resolved, resolvedlen, 1);
}

SHIM_EXPORT char *canonicalize_file_name(const char *path)
{
    return realpath_body(path, NULL, 0, 0);
}

/* A program started from a virtual working directory: take it over, then forget the
 * variable so that it does not leak to programs started after a chdir elsewhere. Lexical
 * only: nothing connects before the first operation on a mount path. */
__attribute__((constructor)) static void cwd_inherit(void)
{
    const char *dir = shim_env(SHIM_ENV_CWD);
    if (!dir)
        return;
    struct shim_path p;
    char full[PATH_MAX];
    if (dir[0] == '/' && shim_resolve(AT_FDCWD, dir, &p) == 1 &&
        shim_mount_path(p.idx, p.rel, full, sizeof full) > 0)
        shim_cwd_set_virtual(full);
    unsetenv(CWD_ENV);
}
