/* dir.c: directory listings, names and directories on mount paths: opendir/fdopendir and
 * readdir (readdir_r, scandir) over a listing taken at open, unlink, rmdir and mkdir (marker
 * keys). A listing is a shim_dir handed out as a DIR *; the registry below tells ours
 * from libc's (foreign streams cost one atomic load while no listing of ours is open). */
#include "shim/shim.h"

#include "shim/inode.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Static_assert(sizeof(struct dirent) == sizeof(struct dirent64), "dirent and dirent64 differ");

struct shim_dir {
    struct shim_dir *next;  /* registry link, guarded by dirs_lock */
    int fd;                 /* the directory descriptor (dirfd), -1 until asked for */
    int idx;                /* mount index */
    char *rel;              /* the directory below the mount */
    kv_list list;           /* the names, from the backend (released with it) */
    char **created;         /* then files created by opens still open here (not committed,
                               so not on the server yet): owned */
    size_t ncreated;
    size_t pos;             /* next entry: 0 ".", 1 "..", list.v[pos - 2], created[...] */
    int no_dotdot;          /* the mount root whose parent is not a local directory: ".."
                               is left out (ls -a would fail to stat it) */
    struct dirent ent;      /* what readdir returns */
};

static pthread_mutex_t dirs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct shim_dir *dirs;
static int ndirs;

void shim_dirs_fork_lock(void)
{
    pthread_mutex_lock(&dirs_lock);
}

void shim_dirs_fork_unlock(int child)
{
    if (child)
        pthread_mutex_init(&dirs_lock, NULL);
    else
        pthread_mutex_unlock(&dirs_lock);
}

static struct shim_dir *ours(DIR *d)
{
    if (!__atomic_load_n(&ndirs, __ATOMIC_ACQUIRE) || shim_guard)
        return NULL;
    pthread_mutex_lock(&dirs_lock);
    struct shim_dir *s = dirs;
    while (s && (DIR *)s != d)
        s = s->next;
    pthread_mutex_unlock(&dirs_lock);
    return s;
}

/* shim_inode_each_created's callback: a created file's name, unless the server listed it. */
static void add_created(const char *name, void *arg)
{
    struct shim_dir *s = arg;
    for (size_t i = 0; i < s->list.n; i++)
        if (strcmp(s->list.v[i].name, name) == 0)
            return;
    char **v = realloc(s->created, (s->ncreated + 1) * sizeof *v);
    if (v && (v[s->ncreated] = strdup(name))) /* out of memory: listed as the server has it */
        s->ncreated++;
    if (v)
        s->created = v;
}

/* A listing of mount directory (idx, rel), registered. fd (may be -1) becomes its dirfd. */
static DIR *dir_new(int idx, const char *rel, int fd)
{
    const kv_ops *ops;
    kv_mount *km;
    struct shim_dir *s = calloc(1, sizeof *s);
    int r = s ? 0 : -ENOMEM;
    if (r == 0 && !(s->rel = strdup(rel)))
        r = -ENOMEM;
    shim_enter();
    if (r == 0)
        r = shim_backend(idx, &ops, &km);
    if (r == 0)
        r = ops->list(km, rel, &s->list);
    if (r == 0)
        shim_inode_each_created(idx, rel, add_created, s);
    shim_leave();
    if (r < 0) {
        if (s)
            free(s->rel);
        free(s);
        errno = -r;
        return NULL;
    }
    s->fd = fd;
    s->idx = idx;
    if (!*rel) {
        struct stat st;
        char parent[PATH_MAX];
        const struct mount *m = shim_mount(idx);
        const char *slash = strrchr(m->path, '/'); /* the path is absolute, not "/" */
        snprintf(parent, sizeof parent, "%.*s", slash == m->path ? 1 : (int)(slash - m->path),
                 m->path);
        s->no_dotdot = real_fstatat()(AT_FDCWD, parent, &st, 0) < 0;
    }
    pthread_mutex_lock(&dirs_lock);
    s->next = dirs;
    dirs = s;
    __atomic_add_fetch(&ndirs, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&dirs_lock);
    return (DIR *)s;
}

SHIM_EXPORT DIR *opendir(const char *path)
{
    if (!shim_guard) {
        struct shim_path p;
        int r = shim_resolve(AT_FDCWD, path, &p);
        if (r < 0) {
            errno = -r;
            return NULL;
        }
        if (r == 1)
            return dir_new(p.idx, p.rel, -1);
        if (p.local != path)
            return real_opendir()(p.local);
    }
    return real_opendir()(path);
}

SHIM_EXPORT DIR *fdopendir(int fd)
{
    struct shim_file *f = shim_guard ? NULL : fdtable_get(fd);
    if (!f)
        return real_fdopendir()(fd);
    if (!f->is_dir) {
        errno = ENOTDIR;
        return NULL;
    }
    return dir_new(f->mount_idx, f->rel, fd);
}

static struct dirent *dir_next(struct shim_dir *s)
{
    const char *name;
    unsigned char type = DT_DIR;
    if (s->pos == 0) {
        name = ".";
    } else if (s->pos == 1 && !s->no_dotdot) {
        name = "..";
    } else if (s->pos == 1) {
        s->pos++;
        return dir_next(s);
    } else if (s->pos - 2 < s->list.n) {
        const kv_dirent *e = &s->list.v[s->pos - 2];
        name = e->name;
        type = e->is_dir ? DT_DIR : DT_REG;
    } else if (s->pos - 2 - s->list.n < s->ncreated) {
        name = s->created[s->pos - 2 - s->list.n];
        type = DT_REG;
    } else {
        return NULL;
    }
    s->pos++;
    size_t len = strlen(name);
    if (len >= sizeof s->ent.d_name)
        len = sizeof s->ent.d_name - 1;
    char full[PATH_MAX];
    snprintf(full, sizeof full, "%s%s%s", s->rel, *s->rel ? "/" : "", name);
    s->ent.d_ino = shim_ino(s->idx, full);
    s->ent.d_off = (off_t)s->pos;
    s->ent.d_reclen = sizeof s->ent;
    s->ent.d_type = type;
    memcpy(s->ent.d_name, name, len);
    s->ent.d_name[len] = '\0';
    return &s->ent;
}

SHIM_EXPORT struct dirent *readdir(DIR *d)
{
    struct shim_dir *s = ours(d);
    return s ? dir_next(s) : real_readdir()(d);
}

SHIM_EXPORT struct dirent64 *readdir64(DIR *d)
{
    struct shim_dir *s = ours(d);
    return s ? (struct dirent64 *)dir_next(s) : real_readdir64()(d);
}

SHIM_EXPORT int closedir(DIR *d)
{
    struct shim_dir *s = ours(d);
    if (!s)
        return real_closedir()(d);
    pthread_mutex_lock(&dirs_lock);
    struct shim_dir **pp = &dirs;
    while (*pp != s)
        pp = &(*pp)->next;
    *pp = s->next;
    __atomic_sub_fetch(&ndirs, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&dirs_lock);
    if (s->fd >= 0)
        close(s->fd);
    shim_enter();
    const kv_ops *ops;
    kv_mount *km;
    if (shim_backend(s->idx, &ops, &km) == 0)
        ops->release_list(&s->list);
    shim_leave();
    for (size_t i = 0; i < s->ncreated; i++)
        free(s->created[i]);
    free(s->created);
    free(s->rel);
    free(s);
    return 0;
}

SHIM_EXPORT int dirfd(DIR *d)
{
    struct shim_dir *s = ours(d);
    if (!s)
        return real_dirfd()(d);
    if (s->fd < 0) {
        /* A directory descriptor standing for this listing's directory. */
        char path[PATH_MAX];
        s->fd = shim_mount_path(s->idx, s->rel, path, sizeof path) < 0
                    ? -1 : open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    return s->fd;
}

SHIM_EXPORT void rewinddir(DIR *d)
{
    struct shim_dir *s = ours(d);
    if (s)
        s->pos = 0;
    else
        real_rewinddir()(d);
}

SHIM_EXPORT long telldir(DIR *d)
{
    struct shim_dir *s = ours(d);
    return s ? (long)s->pos : real_telldir()(d);
}

SHIM_EXPORT void seekdir(DIR *d, long pos)
{
    struct shim_dir *s = ours(d);
    if (s)
        s->pos = pos < 0 ? 0 : (size_t)pos;
    else
        real_seekdir()(d, pos);
}

/* The one body of readdir_r and readdir64_r (the layouts are the same). */
static int readdir_r_body(struct shim_dir *s, struct dirent *ent, struct dirent **res)
{
    struct dirent *e = dir_next(s);
    if (e)
        memcpy(ent, e, sizeof *ent);
    *res = e ? ent : NULL;
    return 0;
}

SHIM_EXPORT int readdir_r(DIR *d, struct dirent *ent, struct dirent **res)
{
    struct shim_dir *s = ours(d);
    return s ? readdir_r_body(s, ent, res) : real_readdir_r()(d, ent, res);
}

SHIM_EXPORT int readdir64_r(DIR *d, struct dirent64 *ent, struct dirent64 **res)
{
    struct shim_dir *s = ours(d);
    return s ? readdir_r_body(s, (struct dirent *)ent, (struct dirent **)res)
             : real_readdir64_r()(d, ent, res);
}

typedef int (*scan_sel)(const struct dirent *);
typedef int (*scan_cmp)(const struct dirent **, const struct dirent **);

struct cmp_box {
    scan_cmp cmp;
};

static int cmp_tramp(const void *a, const void *b, void *box)
{
    return ((struct cmp_box *)box)->cmp((const struct dirent **)a, (const struct dirent **)b);
}

/* scandir of a mount directory, as glibc's: every entry (".", ".." included) that sel keeps,
 * each in its own malloc()ed block, sorted with cmp. Returns the count or -errno. */
static int scan_mount(const struct shim_path *p, struct dirent ***out, scan_sel sel, scan_cmp cmp)
{
    DIR *d = dir_new(p->idx, p->rel, -1);
    if (!d)
        return -errno;
    struct shim_dir *s = (struct shim_dir *)d;
    struct dirent **v = malloc((s->list.n + 2) * sizeof *v);
    int n = 0, r = v ? 0 : -ENOMEM;
    struct dirent *e;
    while (r == 0 && (e = dir_next(s))) {
        if (sel && !sel(e))
            continue;
        struct dirent *c = malloc(sizeof *c);
        if (!c) {
            r = -ENOMEM;
            break;
        }
        memcpy(c, e, sizeof *c);
        v[n++] = c;
    }
    closedir(d);
    if (r < 0) {
        while (n > 0)
            free(v[--n]);
        free(v);
        return r;
    }
    struct cmp_box box = { cmp };
    if (cmp && n > 1)
        qsort_r(v, (size_t)n, sizeof *v, cmp_tramp, &box);
    *out = v;
    return n;
}

/* The one body of the scandir family. */
static int scandir_body(int dirfd, const char *path, struct dirent ***out, scan_sel sel,
                        scan_cmp cmp, int at)
{
    if (!shim_guard) {
        struct shim_path p;
        int r = shim_resolve(dirfd, path, &p);
        if (r < 0)
            return shim_fail(r);
        if (r == 1) {
            r = scan_mount(&p, out, sel, cmp);
            return r < 0 ? shim_fail(r) : r;
        }
        if (p.local != path)
            return real_scandir()(p.local, out, sel, cmp);
    }
    return at ? real_scandirat()(dirfd, path, out, sel, cmp) : real_scandir()(path, out, sel, cmp);
}

SHIM_EXPORT int scandir(const char *path, struct dirent ***list, scan_sel sel, scan_cmp cmp)
{
    return scandir_body(AT_FDCWD, path, list, sel, cmp, 0);
}

SHIM_EXPORT int scandir64(const char *path, struct dirent64 ***list,
                          int (*sel)(const struct dirent64 *),
                          int (*cmp)(const struct dirent64 **, const struct dirent64 **))
{
    return scandir_body(AT_FDCWD, path, (struct dirent ***)list, (scan_sel)(void (*)(void))sel,
                        (scan_cmp)(void (*)(void))cmp, 0);
}

SHIM_EXPORT int scandirat(int dirfd, const char *path, struct dirent ***list, scan_sel sel,
                          scan_cmp cmp)
{
    return scandir_body(dirfd, path, list, sel, cmp, 1);
}

SHIM_EXPORT int scandirat64(int dirfd, const char *path, struct dirent64 ***list,
                            int (*sel)(const struct dirent64 *),
                            int (*cmp)(const struct dirent64 **, const struct dirent64 **))
{
    return scandir_body(dirfd, path, (struct dirent ***)list, (scan_sel)(void (*)(void))sel,
                        (scan_cmp)(void (*)(void))cmp, 1);
}

/* The one body of unlink, unlinkat, rmdir and mkdir on mount paths. */
enum name_op { OP_UNLINK, OP_RMDIR, OP_MKDIR };

/* After unlinking rel: directories that existed only because of the keys below them stay
 * directories when their last file goes, as on a local disk (their marker keys are written,
 * outermost first), so `rm -r` can still rmdir them. */
static void keep_parent(const kv_ops *ops, kv_mount *km, const char *rel)
{
    const char *slash = strrchr(rel, '/');
    if (!slash)
        return; /* the mount root always exists */
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%.*s", (int)(slash - rel), rel);
    kv_stat ks;
    if (ops->stat(km, parent, &ks) != -ENOENT)
        return;
    keep_parent(ops, km, parent);
    ops->mkdir(km, parent);
}

/* 0: a local path (the caller asks libc, giving it p->local); 1: done on the mount; or a
 * negative errno. */
static int name_body(int dirfd, const char *path, enum name_op op, struct shim_path *p)
{
    p->local = path;
    if (shim_guard)
        return 0;
    int r = shim_resolve(dirfd, path, p);
    if (r <= 0)
        return r;
    if (*p->rel == '\0')
        return op == OP_MKDIR ? -EEXIST : op == OP_RMDIR ? -EBUSY : -EISDIR;
    const kv_ops *ops;
    kv_mount *km;
    shim_enter();
    r = shim_backend(p->idx, &ops, &km);
    if (r == 0)
        r = op == OP_UNLINK ? shim_remove_value(ops, km, p->idx, p->rel)
          : op == OP_RMDIR  ? ops->rmdir(km, p->rel)
                            : ops->mkdir(km, p->rel);
    if (r == 0 && op == OP_UNLINK)
        keep_parent(ops, km, p->rel);
    shim_leave();
    return r < 0 ? r : 1;
}

SHIM_EXPORT int unlink(const char *path)
{
    struct shim_path p;
    int r = name_body(AT_FDCWD, path, OP_UNLINK, &p);
    if (r != 0)
        return r < 0 ? shim_fail(r) : 0;
    return real_unlinkat()(AT_FDCWD, p.local, 0);
}

SHIM_EXPORT int unlinkat(int dirfd, const char *path, int flags)
{
    struct shim_path p;
    int r = name_body(dirfd, path, (flags & AT_REMOVEDIR) ? OP_RMDIR : OP_UNLINK, &p);
    if (r != 0)
        return r < 0 ? shim_fail(r) : 0;
    return real_unlinkat()(dirfd, p.local, flags);
}

SHIM_EXPORT int rmdir(const char *path)
{
    struct shim_path p;
    int r = name_body(AT_FDCWD, path, OP_RMDIR, &p);
    if (r != 0)
        return r < 0 ? shim_fail(r) : 0;
    return real_unlinkat()(AT_FDCWD, p.local, AT_REMOVEDIR);
}

SHIM_EXPORT int mkdir(const char *path, mode_t mode)
{
    struct shim_path p;
    int r = name_body(AT_FDCWD, path, OP_MKDIR, &p);
    if (r != 0)
        return r < 0 ? shim_fail(r) : 0;
    return real_mkdirat()(AT_FDCWD, p.local, mode);
}

SHIM_EXPORT int mkdirat(int dirfd, const char *path, mode_t mode)
{
    struct shim_path p;
    int r = name_body(dirfd, path, OP_MKDIR, &p);
    if (r != 0)
        return r < 0 ? shim_fail(r) : 0;
    return real_mkdirat()(dirfd, p.local, mode);
}
