/* mindex.c: the index of a read cache's mirror (cache.c): every key of a mount with its
 * revision, time and size (and its value under read=watch), a directory's children, and
 * nothing else. Pure: no lock (cache.c holds its mirror's), no nats.c, no logging.
 *
 * A node per path component, not per full key: the key "<base>users/u1/state.json" is the
 * node "state.json" under the node "u1/" under the node "users/" under the root (<base>,
 * not hashed). A directory's node is its marker key's ("u1/", trailing '/'), present (live)
 * or not: it exists while anything is below it, keeps its children in a list (kids, sibling
 * links) and counts the live keys below it. So a directory's name is stored once, however
 * many keys it holds, and a file stores only its last component.
 *
 * One hash table finds a node by (parent node, name) (chained; FNV-1a over the name, mixed
 * with the parent's address): a key is found in one probe per component, its parent is one
 * pointer away, a listing walks only that directory's children. The probes per component
 * are the price of the memory: os.path.exists of "users/u777/state.json" from a caught-up
 * mirror of 100,000 such keys took 1.09-1.40 us in Python against 1.07-1.17 us with one
 * table of full keys (6 interleaved rounds of 20,000; about 3 to 7% more).
 *
 * Memory (issue 12: <= 200 bytes per key for read=meta): a node is 63 bytes plus its name,
 * carved from 64 KiB blocks in steps of 8 bytes, so no malloc header (8 bytes) nor its
 * rounding to 16. A removed node's bytes go on a free list of their size and are reused by
 * the next node of that size; the blocks go back only when the index is cleared (a new walk,
 * after a reconnect): memory follows the peak number of nodes of each size, not the current.
 * README "Read cache" gives the measured bytes per key.
 *
 * Invariants: every node's parent exists (a node keeps its directory alive); a node that is
 * neither live, nor a tombstone, nor a directory with children, is removed at once (prune).
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kv/internal.h"

#define BLOCK_BYTES (64 * 1024)
#define LIVE 1                  /* the key exists (a value, or the directory's marker) */
#define TOMB 2                  /* deleted by this process, not yet delivered by the walk */

typedef struct mnode {
    struct mnode *chain;        /* the next node in its hash slot */
    struct mnode *up;           /* the parent directory (NULL for the root) */
    struct mnode *prev, *next;  /* siblings, in up's kids */
    union {
        struct mnode *kids;     /* a directory: its children */
        void *data;             /* a value under read=watch: its bytes (NULL when len 0) */
    } u;
    uint64_t rev;
    int64_t time_ns;
    uint32_t size;              /* a value: its length; a directory: live keys below it */
    uint16_t nlen;              /* strlen(name): a component of a key under MINDEX_KEY_MAX */
    uint8_t flags;              /* LIVE, TOMB */
    char name[];                /* NUL-terminated; a directory's ends in '/' */
} mnode;

#define NODE_MAX (offsetof(mnode, name) + MINDEX_KEY_MAX + 1)
#define CLASSES (NODE_MAX / 8 + 1)

typedef struct block {
    struct block *next;
    char mem[];                 /* nodes, from offset 0 (8-aligned: after one pointer) */
} block;

struct mindex {
    mnode **slots;              /* every node but the root, by (up, name): chained */
    size_t cap, count;          /* slots (a power of two, or 0), nodes in them */
    mnode root;                 /* the mount root: name "", up NULL, never hashed */
    block *blocks;              /* the newest first; nodes are carved from its tail */
    size_t used;                /* bytes of blocks->mem given out */
    mnode *free[CLASSES];       /* removed nodes by size / 8, linked by chain */
    size_t blen;
    char base[];                /* the keys' common start: "<prefix>." or "" */
};

/* ---- nodes: allocation from blocks ---- */

static size_t node_bytes(size_t nlen)
{
    return (offsetof(mnode, name) + nlen + 1 + 7) & ~(size_t)7;
}

static mnode *node_alloc(mindex *x, size_t nlen)
{
    size_t sz = node_bytes(nlen);
    mnode *n = x->free[sz / 8];
    if (n) {
        x->free[sz / 8] = n->chain;
    } else {
        if (!x->blocks || x->used + sz > BLOCK_BYTES - sizeof(block)) {
            block *b = malloc(BLOCK_BYTES);
            if (!b)
                return NULL;
            b->next = x->blocks;
            x->blocks = b;
            x->used = 0;
        }
        n = (mnode *)(void *)(x->blocks->mem + x->used);
        x->used += sz;
    }
    memset(n, 0, sz);
    n->nlen = (uint16_t)nlen;
    return n;
}

static int is_dir(const mnode *n)
{
    return n->up == NULL || n->name[n->nlen - 1] == '/';
}

static void node_free(mindex *x, mnode *n)
{
    if (!is_dir(n))
        free(n->u.data);
    size_t c = node_bytes(n->nlen) / 8;
    n->chain = x->free[c];
    x->free[c] = n;
}

/* ---- the table ---- */

static size_t slot_of(const mindex *x, const mnode *up, const char *name, size_t n)
{
    uint64_t h = 14695981039346656037ull ^ ((uint64_t)(uintptr_t)up * 0x9E3779B97F4A7C15ull);
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)name[i]) * 1099511628211ull; /* FNV-1a */
    return (size_t)(h ^ (h >> 32)) & (x->cap - 1); /* the high bits: the parent's too */
}

static mnode *lookup(const mindex *x, const mnode *up, const char *name, size_t n)
{
    for (mnode *e = x->cap ? x->slots[slot_of(x, up, name, n)] : NULL; e; e = e->chain)
        if (e->up == up && e->nlen == n && memcmp(e->name, name, n) == 0)
            return e;
    return NULL;
}

/* Puts n in the table, doubling it when as full as it is long. -ENOMEM. */
static int table_add(mindex *x, mnode *n)
{
    if (x->count + 1 > x->cap) {
        size_t cap = x->cap ? 2 * x->cap : 1024, old = x->cap;
        mnode **slots = calloc(cap, sizeof *slots), **was = x->slots;
        if (!slots)
            return -ENOMEM;
        x->slots = slots;
        x->cap = cap;
        for (size_t i = 0; i < old; i++)
            for (mnode *e = was[i], *next; e; e = next) {
                next = e->chain;
                mnode **s = &slots[slot_of(x, e->up, e->name, e->nlen)];
                e->chain = *s;
                *s = e;
            }
        free(was);
    }
    mnode **s = &x->slots[slot_of(x, n->up, n->name, n->nlen)];
    n->chain = *s;
    *s = n;
    x->count++;
    return 0;
}

static void table_del(mindex *x, mnode *n)
{
    mnode **p = &x->slots[slot_of(x, n->up, n->name, n->nlen)];
    while (*p != n)
        p = &(*p)->chain;
    *p = n->chain;
    x->count--;
}

/* ---- keys ---- */

/* The end of the component of key that starts at p: after its '/', or len. */
static size_t component_end(const char *key, size_t p, size_t len)
{
    const char *s = memchr(key + p, '/', len - p);
    return s ? (size_t)(s - key) + 1 : len;
}

/* The node of key (of len bytes), or NULL; make: creates it and the directories above it
 * (NULL then means no memory). */
static mnode *walk_to(mindex *x, const char *key, size_t len, int make)
{
    if (len < x->blen || memcmp(key, x->base, x->blen) != 0)
        return NULL;
    mnode *d = &x->root;
    for (size_t p = x->blen, e; d && p < len; p = e) {
        e = component_end(key, p, len);
        mnode *n = lookup(x, d, key + p, e - p);
        if (!n && make && (n = node_alloc(x, e - p)) != NULL) {
            memcpy(n->name, key + p, e - p);
            n->up = d;
            if (table_add(x, n) < 0) {
                node_free(x, n);
                return NULL;
            }
            n->next = d->u.kids;
            if (n->next)
                n->next->prev = n;
            d->u.kids = n;
        }
        d = n;
    }
    return d;
}

/* n's full key into out (MINDEX_KEY_MAX + 1 bytes): its length. */
static size_t key_of(const mindex *x, const mnode *n, char *out)
{
    size_t len = x->blen;
    for (const mnode *a = n; a->up; a = a->up)
        len += a->nlen;
    out[len] = '\0';
    size_t p = len;
    for (const mnode *a = n; a->up; a = a->up) {
        p -= a->nlen;
        memcpy(out + p, a->name, a->nlen);
    }
    memcpy(out, x->base, x->blen);
    return len;
}

/* Removes n and then each directory above it that nothing keeps any more. */
static void prune(mindex *x, mnode *n)
{
    while (n->up && !n->flags && !(is_dir(n) && n->u.kids)) {
        mnode *dir = n->up;
        if (n->prev)
            n->prev->next = n->next;
        else
            dir->u.kids = n->next;
        if (n->next)
            n->next->prev = n->prev;
        table_del(x, n);
        node_free(x, n);
        n = dir;
    }
}

/* ---- entry points (internal.h) ---- */

mindex *mindex_new(const char *base)
{
    size_t blen = strlen(base);
    mindex *x = calloc(1, sizeof *x + blen + 1);
    if (!x)
        return NULL;
    memcpy(x->base, base, blen + 1);
    x->blen = blen;
    return x;
}

void mindex_clear(mindex *x)
{
    for (size_t i = 0; i < x->cap; i++)
        for (mnode *n = x->slots[i]; n; n = n->chain)
            if (!is_dir(n))
                free(n->u.data);
    free(x->slots);
    x->slots = NULL;
    x->cap = x->count = 0;
    for (block *b = x->blocks, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    x->blocks = NULL;
    x->used = 0;
    memset(x->free, 0, sizeof x->free);
    memset(&x->root, 0, sizeof x->root);
}

void mindex_free(mindex *x)
{
    if (x)
        mindex_clear(x);
    free(x);
}

int mindex_set(mindex *x, const char *key, void **data, size_t len, uint64_t rev,
               int64_t time_ns, int live, int local)
{
    size_t kl = strlen(key);
    if (kl <= x->blen || strncmp(key, x->base, x->blen) != 0)
        return 0; /* not a key of this mount (or its root, which always exists) */
    if (kl > MINDEX_KEY_MAX)
        return -ENAMETOOLONG;
    mnode *n = walk_to(x, key, kl, 0);
    if (n && n->rev > rev)
        return 0;
    if (!n && !live && !local)
        return 0; /* the delete of a key we never had */
    if (!n && (n = walk_to(x, key, kl, 1)) == NULL)
        return -ENOMEM;
    if (!!(n->flags & LIVE) != !!live)
        for (mnode *d = n->up; d; d = d->up)
            d->size += live ? 1 : (uint32_t)-1;
    n->flags = (uint8_t)(live ? LIVE : local ? TOMB : 0);
    n->rev = rev;
    n->time_ns = time_ns;
    if (!is_dir(n)) {
        n->size = (uint32_t)len;
        free(n->u.data);
        n->u.data = live ? *data : NULL;
        if (live)
            *data = NULL;
    }
    prune(x, n);
    return 0;
}

int mindex_get(const mindex *x, const char *key, mindex_entry *out)
{
    const mnode *n = walk_to((mindex *)x, key, strlen(key), 0);
    if (!n || !(n->flags & LIVE))
        return -ENOENT;
    out->is_dir = is_dir(n);
    out->data = out->is_dir ? NULL : n->u.data;
    out->len = out->is_dir ? 0 : n->size;
    out->rev = n->rev;
    out->time_ns = n->time_ns;
    return 0;
}

int mindex_children(const mindex *x, const char *base,
                    int (*fn)(void *arg, const char *key, int kind), void *arg)
{
    size_t bl = strlen(base);
    const mnode *d = walk_to((mindex *)x, base, bl, 0);
    if (!d || !is_dir(d) || bl > MINDEX_KEY_MAX)
        return 0;
    char key[MINDEX_KEY_MAX + 1];
    memcpy(key, base, bl + 1);
    int r = d->up && (d->flags & LIVE) ? fn(arg, key, CHILD_SELF) : 0;
    for (const mnode *e = d->u.kids; e && r == 0; e = e->next) {
        int kind = !is_dir(e) ? ((e->flags & LIVE) ? CHILD_VALUE : -1)
                 : (e->flags & LIVE) ? CHILD_MARKER : e->size ? CHILD_BELOW : -1;
        if (kind < 0 || bl + e->nlen > MINDEX_KEY_MAX)
            continue; /* a tombstone, or a directory with nothing live below */
        memcpy(key + bl, e->name, e->nlen);
        key[bl + e->nlen] = '\0';
        r = fn(arg, key, kind);
    }
    return r;
}

int mindex_each(const mindex *x,
                int (*fn)(void *arg, const char *key, const void *data, size_t len,
                          uint64_t rev),
                void *arg)
{
    char key[MINDEX_KEY_MAX + 1];
    int r = 0;
    for (size_t i = 0; i < x->cap && r == 0; i++)
        for (const mnode *e = x->slots[i]; e && r == 0; e = e->chain)
            if ((e->flags & LIVE) && !is_dir(e)) {
                key_of(x, e, key);
                r = fn(arg, key, e->u.data, e->size, e->rev);
            }
    return r;
}

size_t mindex_bytes(const mindex *x)
{
    size_t n = sizeof *x + x->blen + 1 + x->cap * sizeof *x->slots;
    for (const block *b = x->blocks; b; b = b->next)
        n += BLOCK_BYTES;
    return n;
}

size_t mindex_count(const mindex *x)
{
    return x->count;
}
