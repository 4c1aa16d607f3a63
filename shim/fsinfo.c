/* fsinfo.c: what a mount says of itself as a file system (statfs, statvfs, pathconf), and
 * lchmod on mount paths, and the path calls that cannot work on a mount:
 * chroot, inotify watches, glibc's fts (it walks with internal calls the hooks never see) and
 * spawn-time opens (glibc performs them in the child with internal calls): ENOTSUP there.
 * Every call on a local path goes to libc unchanged. */
#include "shim/shim.h"

#include <string.h>
#include <unistd.h>

#define ASYA_FS_MAGIC 0x41535941 /* "ASYA": the f_type of a mount */

/* 1 for a mount path (which exists), 0 for a local one (p->local is what libc gets), or a
 * negative errno. */
static int mount_path(const char *path, struct shim_path *p)
{
    p->local = path;
    if (shim_foreign(path))
        return 0;
    return shim_resolve_existing(AT_FDCWD, path, p);
}

static void fill_statfs(struct statfs *s)
{
    memset(s, 0, sizeof *s);
    s->f_type = ASYA_FS_MAGIC;
    s->f_bsize = 4096;
    s->f_frsize = 4096;
    s->f_namelen = 255;
}

static void fill_statvfs(struct statvfs *s)
{
    memset(s, 0, sizeof *s);
    s->f_bsize = 4096;
    s->f_frsize = 4096;
    s->f_namemax = 255;
}

_Static_assert(sizeof(struct statfs) == sizeof(struct statfs64), "statfs and statfs64 differ");
_Static_assert(sizeof(struct statvfs) == sizeof(struct statvfs64), "statvfs and statvfs64 differ");

static int statfs_body(const char *path, struct statfs *s)
{
    struct shim_path p;
    int r = mount_path(path, &p);
    if (r == 0)
        return real_statfs()(p.local, s);
    if (r < 0)
        return shim_fail(r);
    fill_statfs(s);
    return 0;
}

static int statvfs_body(const char *path, struct statvfs *s)
{
    struct shim_path p;
    int r = mount_path(path, &p);
    if (r == 0)
        return real_statvfs()(p.local, s);
    if (r < 0)
        return shim_fail(r);
    fill_statvfs(s);
    return 0;
}

SHIM_EXPORT int statfs(const char *path, struct statfs *s)
{
    return statfs_body(path, s);
}

SHIM_EXPORT int statfs64(const char *path, struct statfs64 *s)
{
    return statfs_body(path, (struct statfs *)s);
}

SHIM_EXPORT int statvfs(const char *path, struct statvfs *s)
{
    return statvfs_body(path, s);
}

SHIM_EXPORT int statvfs64(const char *path, struct statvfs64 *s)
{
    return statvfs_body(path, (struct statvfs *)s);
}

/* A mount answers the limits of a generic local file system: those of "/". */
SHIM_EXPORT long pathconf(const char *path, int name)
{
    struct shim_path p;
    int r = mount_path(path, &p);
    if (r < 0)
        return shim_fail(r);
    return real_pathconf()(r == 1 ? "/" : p.local, name);
}

SHIM_EXPORT int lchmod(const char *path, mode_t mode)
{
    return fchmodat(AT_FDCWD, path, mode, AT_SYMLINK_NOFOLLOW);
}

SHIM_EXPORT int chroot(const char *path)
{
    struct shim_path p;
    int r = mount_path(path, &p);
    if (r != 0)
        return shim_fail(r < 0 ? r : -ENOTSUP);
    return real_chroot()(p.local);
}

SHIM_EXPORT int inotify_add_watch(int fd, const char *path, uint32_t mask)
{
    struct shim_path p;
    int r = mount_path(path, &p);
    if (r != 0)
        return shim_fail(r < 0 ? r : -ENOTSUP);
    return real_inotify_add_watch()(fd, p.local, mask);
}

SHIM_EXPORT FTS *fts_open(char *const *argv, int options,
                          int (*compar)(const FTSENT **, const FTSENT **))
{
    for (size_t i = 0; argv && argv[i]; i++) {
        struct shim_path p;
        if (!shim_guard && shim_resolve(AT_FDCWD, argv[i], &p) != 0) {
            errno = ENOTSUP;
            return NULL;
        }
    }
    return real_fts_open()(argv, options, compar);
}

SHIM_EXPORT int posix_spawn_file_actions_addopen(posix_spawn_file_actions_t *fa, int fd,
                                                 const char *path, int oflag, mode_t mode)
{
    struct shim_path p;
    if (!shim_guard && shim_resolve(AT_FDCWD, path, &p) != 0)
        return ENOTSUP; /* returns the error number, as posix_spawn_file_actions_* do */
    return real_posix_spawn_file_actions_addopen()(fa, fd, path, oflag, mode);
}
