/* inode_maps.c: the shared writable mappings of mount files (shim/inode.h, "Shared
 * mappings"). Each keeps a use of its inode until its last byte is unmapped, so a file whose
 * descriptors are all closed is committed when its last mapping goes (munmap, or exit). An
 * entry is one page-rounded range of one mapping: munmap of a piece trims it (a hole in the
 * middle makes two entries, each holding a use), mremap moves it.
 *
 * maps_lock guards the list; it is taken before the inode table's lock (shim_inode_use), never
 * while holding it, and is held across no call out of this file but shim_inode_use. */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#include "shim/inode.h"
#include "shim/shim.h"

struct map {
    char *addr;
    size_t len; /* whole pages */
    struct shim_inode *ino;
};

static struct map *maps;
static int nmaps, capmaps;
static pthread_mutex_t maps_lock = PTHREAD_MUTEX_INITIALIZER;
int shim_inode_maps_live;

void shim_inode_maps_fork_lock(void)
{
    pthread_mutex_lock(&maps_lock);
}

void shim_inode_maps_fork_unlock(int child)
{
    if (child) /* the entries stay: their inodes are the parent's, never committed here */
        pthread_mutex_init(&maps_lock, NULL);
    else
        pthread_mutex_unlock(&maps_lock);
}

static size_t page_up(size_t n)
{
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    return (n + ps - 1) / ps * ps;
}

/* Appends an entry (maps_lock held); each entry holds a use and a reference of its inode,
 * which the caller has given it. 0 or -ENOMEM. */
static int add_map_locked(char *addr, size_t len, struct shim_inode *ino)
{
    if (nmaps == capmaps) {
        int cap = capmaps ? 2 * capmaps : 16;
        struct map *m = realloc(maps, (size_t)cap * sizeof *m);
        if (!m)
            return -ENOMEM;
        maps = m;
        capmaps = cap;
    }
    maps[nmaps++] = (struct map){ .addr = addr, .len = len, .ino = ino };
    __atomic_store_n(&shim_inode_maps_live, nmaps, __ATOMIC_RELEASE);
    return 0;
}

int shim_inode_mapped(int fd, void *addr, size_t len)
{
    struct shim_file *f = fdtable_hold(fd);
    struct shim_inode *ino = f ? f->ino : NULL;
    int r = 0;
    if (ino) {
        pthread_mutex_lock(&maps_lock);
        r = add_map_locked(addr, page_up(len), ino);
        if (r == 0)
            shim_inode_use(ino);
        pthread_mutex_unlock(&maps_lock);
    }
    if (f)
        fdtable_unref(f);
    return r;
}

/* Takes [lo, hi) out of the entry at i (maps_lock held), keeping what is left of it on
 * either side. Returns 1 when nothing is left (the entry is removed: its use and reference
 * are the caller's now), else 0; -ENOMEM when a hole would need an entry that cannot be
 * made (the entry is then kept whole: committed at exit at the latest). */
static int cut_locked(int i, char *lo, char *hi)
{
    struct map *m = &maps[i];
    char *end = m->addr + m->len;
    int left = m->addr < lo, right = hi < end;
    if (left && right) {
        struct shim_inode *ino = m->ino;
        if (add_map_locked(hi, (size_t)(end - hi), ino) < 0)
            return -ENOMEM;
        shim_inode_use(ino); /* the second piece holds a use of its own */
        maps[i].len = (size_t)(lo - maps[i].addr); /* maps may have moved */
        return 0;
    }
    if (left) {
        m->len = (size_t)(lo - m->addr);
        return 0;
    }
    if (right) {
        m->len = (size_t)(end - hi);
        m->addr = hi;
        return 0;
    }
    maps[i] = maps[--nmaps];
    __atomic_store_n(&shim_inode_maps_live, nmaps, __ATOMIC_RELEASE);
    return 1;
}

/* Takes [addr, addr + len) out of every mapping (everything when addr is NULL) and puts in
 * out the inodes of those wholly gone, each with its use and reference; up to max. With
 * wholly 0 nothing changes: out gets the inodes of every mapping that meets the range, each
 * with one more use and reference (msync). Returns how many. */
static int take_maps(char *addr, size_t len, int wholly, struct shim_inode **out, int max)
{
    char *lo = addr, *hi = addr ? addr + page_up(len) : NULL;
    int n = 0;
    pthread_mutex_lock(&maps_lock);
    for (int i = 0; i < nmaps && n < max;) {
        struct map *m = &maps[i];
        int meets = !addr || (m->addr < hi && lo < m->addr + m->len);
        if (!meets) {
            i++;
            continue;
        }
        if (!wholly) {
            out[n++] = m->ino;
            shim_inode_use(m->ino);
            i++;
            continue;
        }
        struct shim_inode *ino = m->ino;
        int gone = addr ? cut_locked(i, lo, hi) : (maps[i] = maps[--nmaps], 1);
        if (gone == 1)
            out[n++] = ino; /* maps[i] is another entry now */
        else
            i++;
    }
    __atomic_store_n(&shim_inode_maps_live, nmaps, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&maps_lock);
    return n;
}

static int close_all(struct shim_inode **v, int n, int commit_first)
{
    int err = 0;
    for (int i = 0; i < n; i++) {
        int r = commit_first ? shim_inode_commit(v[i], -1, NULL) : 0;
        /* an inode listed twice (two mappings) holds a reference for each, so the put of
         * the first never frees it: NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
        int c = shim_inode_close(v[i], -1, NULL);
        shim_inode_put(v[i]);
        if (!err)
            err = r < 0 ? r : c;
    }
    return err;
}

int shim_inode_unmapped(void *addr, size_t len)
{
    struct shim_inode *v[64];
    int n, err = 0;
    while ((n = take_maps(addr, len, 1, v, 64)) > 0) {
        int r = close_all(v, n, 0);
        err = err ? err : r;
        if (n < 64)
            break;
    }
    return err;
}

int shim_inode_remapped(void *old, size_t old_len, void *addr, size_t len)
{
    char *lo = old, *hi = lo + page_up(old_len);
    ptrdiff_t grow = (ptrdiff_t)page_up(len) - (ptrdiff_t)page_up(old_len);
    struct map moved[64];
    struct shim_inode *gone[64];
    int nmoved = 0, ngone = 0, r = 0;
    pthread_mutex_lock(&maps_lock);
    /* Each piece of a mapping inside the old range is cut out (what is left outside stays,
     * and is never met again), then put back at the same offset from the new address; the
     * piece at the range's end grows or shrinks with it. */
    for (int i = 0; i < nmaps && nmoved < 64;) {
        struct map *m = &maps[i];
        char *plo = m->addr > lo ? m->addr : lo;
        char *phi = m->addr + m->len < hi ? m->addr + m->len : hi;
        if (plo >= phi) {
            i++;
            continue;
        }
        struct shim_inode *ino = m->ino;
        ptrdiff_t plen = (phi - plo) + (phi == hi ? grow : 0);
        int c = cut_locked(i, plo, phi);
        if (c < 0) {
            r = c;
            i++;
            continue;
        }
        if (c == 0) { /* the mapping keeps a part here: the moved piece needs its own use */
            shim_inode_use(ino);
            i++;
        }
        moved[nmoved++] = (struct map){ .addr = (char *)addr + (plo - lo),
                                        .len = plen > 0 ? (size_t)plen : 0, .ino = ino };
    }
    for (int k = 0; k < nmoved; k++) {
        if (moved[k].len == 0 || add_map_locked(moved[k].addr, moved[k].len, moved[k].ino) < 0) {
            r = moved[k].len ? -ENOMEM : r;
            gone[ngone++] = moved[k].ino;
        }
    }
    pthread_mutex_unlock(&maps_lock);
    int c = close_all(gone, ngone, 0);
    return r < 0 ? r : c;
}

int shim_inode_msync(void *addr, size_t len)
{
    struct shim_inode *v[64];
    int n = take_maps(addr, len, 0, v, 64);
    return close_all(v, n, 1);
}

int shim_inode_commit_mapped(void)
{
    return shim_inode_unmapped(NULL, 0);
}
