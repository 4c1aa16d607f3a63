/* dirs.c: directories over a flat key space: key scans, list, mkdir, rmdir, and the
 * directory markers this process knows.
 *
 * A directory rel exists when its marker key "key(rel)/" exists (SPEC "Paths and keys"):
 * stat answers with two Gets at most. '/' is not a NATS subject token separator, so keys
 * below a directory cannot be selected by a subject filter. Listings take the names from the
 * read cache's mirror when the mount has a fresh one (cache_children: the directory's own
 * children, no request); otherwise they, and always rmdir's emptiness test (a stale mirror
 * must not let rmdir drop the marker of a directory another client just wrote into), scan
 * every key under the mount's prefix in one headers-only pass (walk.c's walk_once),
 * filtering client-side: O(keys under the prefix). The delete markers a pass skips are
 * handed to tombs.c, which removes old ones after it, so they do not pile up.
 *
 * Listing: names one level below, decoded with key_decode, each once, sorted; marker keys
 * are never files. A name that is both a value and a directory ("a" and "a/x") is listed as
 * a file, as stat reports it. Keys that do not decode (written by another client without
 * our escaping) are skipped. A directory a listing finds only through the keys below it
 * (written by another client without markers) gets its marker, create-only, so stat agrees
 * afterwards.
 *
 * Known markers: a set of (mount, marker key) this process has seen or written, so a
 * create in a known directory sends nothing (dirs_parent). Another process's rmdir is not
 * seen: a file created then lands in a directory without a marker, which the next listing
 * repairs. Guarded by known_mu (made afresh in a forked child).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "common/log.h"
#include "kv/internal.h"
#include "kv/keycodec.h"

/* ---- known markers ---- */

typedef struct known_ent {
    UT_hash_handle hh;
    char key[]; /* "<mount address> <marker key>" */
} known_ent;

static known_ent *known;
static pthread_mutex_t known_mu = PTHREAD_MUTEX_INITIALIZER;

static int known_key(const kv_mount *m, const char *marker, char *out, size_t outsz)
{
    int n = snprintf(out, outsz, "%p %s", (const void *)m, marker);
    return n > 0 && (size_t)n < outsz ? n : -1;
}

int dirs_known(const kv_mount *m, const char *marker)
{
    char k[KV_KEY_MAX + 40];
    if (known_key(m, marker, k, sizeof k) < 0)
        return 0;
    known_ent *e = NULL;
    pthread_mutex_lock(&known_mu);
    HASH_FIND_STR(known, k, e);
    pthread_mutex_unlock(&known_mu);
    return e != NULL;
}

void dirs_note(const kv_mount *m, const char *marker, int is_known)
{
    char k[KV_KEY_MAX + 40];
    int n = known_key(m, marker, k, sizeof k);
    if (n < 0)
        return;
    known_ent *e = NULL;
    pthread_mutex_lock(&known_mu);
    HASH_FIND_STR(known, k, e);
    if (e && !is_known) {
        HASH_DEL(known, e);
        free(e);
    } else if (!e && is_known && (e = malloc(sizeof *e + (size_t)n + 1))) {
        memcpy(e->key, k, (size_t)n + 1);
        HASH_ADD_STR(known, key, e); /* out of memory: simply not known */
    }
    pthread_mutex_unlock(&known_mu);
}

void dirs_after_fork_child(void)
{
    pthread_mutex_init(&known_mu, NULL);
}

typedef struct keys_arg {
    const char *base;
    size_t blen;
    int (*fn)(const char *key, void *arg);
    void *arg;
} keys_arg;

static int keys_fn(void *arg, const kv_rec *e)
{
    keys_arg *a = arg;
    return strncmp(e->key, a->base, a->blen) == 0 ? a->fn(e->key, a->arg) : 0;
}

int dirs_scan(kv_conn *c, const kv_bucket *b, const char *prefix, const char *base,
              int (*fn)(const char *key, void *arg), void *arg)
{
    keys_arg a = { base, strlen(base), fn, arg };
    const char *why = NULL;
    tombs t = { 0 };
    int r = walk_once(c, b, prefix, 0, keys_fn, &a, &t, &why);
    if (r >= 0)
        tombs_sweep(c, b, &t); /* delete markers do not pile up (tombs.c) */
    tombs_free(&t);
    if (r < 0) {
        if (r == -ENOENT || r == -EEXIST)
            r = -EIO;
        log_at(LOG_WARN, "%s*: listing keys failed: %s", base, why ? why : strerror(-r));
    }
    return r;
}

typedef struct below_arg {
    const char *skip;
} below_arg;

static int below_fn(const char *key, void *arg)
{
    below_arg *a = arg;
    return (a->skip && strcmp(key, a->skip) == 0) ? 0 : 1;
}

int dirs_has_below(kv_conn *c, const kv_bucket *b, const kv_mount *m, const char *dirbase,
                   const char *skip)
{
    below_arg a = { skip };
    return dirs_scan(c, b, m->prefix, dirbase, below_fn, &a);
}

/* ---- list ---- */

typedef struct name_ent {
    UT_hash_handle hh;
    int is_dir;             /* keys below it and no value of that name */
    int has_value, has_dir; /* a value of that name; keys below it (a marker counts) */
    int both;               /* has_value && has_dir */
    int has_marker;         /* its marker key was among the keys */
    char *marker;           /* its marker key, kept for a repair when it is a directory */
    char name[];
} name_ent;

typedef struct list_arg {
    const kv_mount *m;
    size_t blen;
    name_ent *names;
    size_t n;
    int marker_seen;
    int err;
} list_arg;

/* One key of the listed directory's (base's) subtree; below: key is "<base>name/" standing
 * for keys below a directory that has no marker (the mirror's CHILD_BELOW). */
static int list_key(list_arg *a, const char *key, int below)
{
    const char *rest = key + a->blen;
    if (!*rest) {
        a->marker_seen = 1;
        return 0;
    }
    const char *slash = strchr(rest, '/');
    size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
    char name[KV_KEY_MAX + 1];
    int nl = n ? key_decode(rest, n, name, sizeof name) : -EINVAL;
    if (nl < 0) {
        /* another client's key: empty name, a NUL, or no escaping of ours (issue 13) */
        log_at(LOG_WARN, "%s: not listed: its name is empty, holds a NUL or is not escaped "
               "as this connector writes names", key);
        return 0;
    }
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || memchr(name, '/', (size_t)nl)) {
        /* written by another client: joined into a path it would leave the directory */
        log_at(LOG_WARN, "%s: not listed: its name decodes to '.', '..' or a '/'", key);
        return 0;
    }
    int is_marker = slash && slash[1] == '\0' && !below;
    name_ent *e = NULL;
    HASH_FIND_STR(a->names, name, e);
    if (!e) {
        e = calloc(1, sizeof *e + (size_t)nl + 1);
        if (!e) {
            a->err = -ENOMEM;
            return -ENOMEM;
        }
        memcpy(e->name, name, (size_t)nl + 1);
        HASH_ADD_KEYPTR(hh, a->names, e->name, (size_t)nl, e);
        a->n++;
    }
    e->has_value |= !slash;
    e->has_dir |= slash != NULL;
    e->is_dir = e->has_dir && !e->has_value; /* a value wins over a directory of its name */
    e->both = e->has_dir && e->has_value;
    e->has_marker |= is_marker;
    if (slash && !e->marker)
        e->marker = strndup(key, (size_t)(slash - key) + 1); /* NULL: no repair, no harm */
    return 0;
}

static int list_fn(const char *key, void *arg)
{
    return list_key(arg, key, 0);
}

static int child_fn(void *arg, const char *key, int kind)
{
    return list_key(arg, key, kind == CHILD_BELOW);
}

/* Writes the markers of the directories a listing found only through keys below them, and
 * notes them as known: names with no value (a listed directory itself may have one too: that
 * one is not noted, so stat asks its value first). */
static void repair(kv_conn *c, const kv_bucket *b, const kv_mount *m, name_ent *names)
{
    for (name_ent *e = names; e; e = e->hh.next) {
        if (!e->is_dir || e->has_marker || !e->marker)
            continue;
        uint64_t rev = 0;
        int r = ops_publish(c, b, e->marker, "", 0, KV_REV_ABSENT, 0, &rev);
        if (r == 0)
            cache_note(m, e->marker, "", 0, rev, 0);
        if ((r == 0 || r == -EEXIST) && e->has_dir)
            dirs_note(m, e->marker, 1);
        log_at(r == 0 || r == -EEXIST ? LOG_INFO : LOG_WARN,
               "%s: directory without a marker: %s", e->marker,
               r == 0 ? "marker written" : r == -EEXIST ? "marker found" : strerror(-r));
    }
}

static int by_name(const void *x, const void *y)
{
    return strcmp(((const kv_dirent *)x)->name, ((const kv_dirent *)y)->name);
}

static void free_names(name_ent **names)
{
    name_ent *e, *tmp;
    HASH_ITER(hh, *names, e, tmp) {
        /* HASH_DEL then free of the iterated entry is uthash's idiom (the analyzer loses
         * track of tmp): NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
        HASH_DEL(*names, e);
        free(e->marker);
        free(e);
    }
}

/* The keys' common start for rel's children: "prefix." (or "") for the root, else the
 * marker key "key(rel)/". */
static int child_base(const kv_mount *m, const char *rel, char *out, size_t outsz)
{
    if (*rel)
        return ops_key(m, rel, 1, out, outsz);
    int n = snprintf(out, outsz, "%s%s", m->prefix ? m->prefix : "", m->prefix ? "." : "");
    return n < 0 || (size_t)n >= outsz ? -ENAMETOOLONG : 0;
}

int dirs_list(kv_mount *m, const char *rel, kv_list *out)
{
    char base[KV_KEY_MAX + 2];
    int r = child_base(m, rel, base, sizeof base);
    kv_conn *c;
    const kv_bucket *b;
    if (r < 0 || (r = ops_open(m, base, &c, &b)) < 0)
        return r;
    list_arg a = { .m = m, .blen = strlen(base) };
    cache_start(m);
    r = cache_children(m, base, child_fn, &a); /* the read cache's mirror, when fresh */
    if (r == 1)
        r = dirs_scan(c, b, m->prefix, base, list_fn, &a);
    if (r == 0 && a.err)
        r = a.err;
    if (r == 0 && *rel && a.n == 0 && !a.marker_seen) {
        kv_stat st;
        r = ops_stat_on(c, b, m, rel, &st);
        r = r == 0 ? -ENOTDIR : r;
        log_at(LOG_INFO, "%s: list: %s", base, r == -ENOTDIR ? "not a directory" : "no such directory");
    }
    if (r == 0) {
        name_ent self = { .is_dir = 1, .has_marker = !*rel || a.marker_seen,
                          .marker = base };
        repair(c, b, m, &self); /* the listed directory itself, found by its keys */
        repair(c, b, m, a.names);
        /* the child directories found by their markers are known from now on (stat asks the
         * marker first), a name that is a value too is not (stat answers the value, as the
         * listing does) */
        for (name_ent *e = a.names; e; e = e->hh.next)
            if (e->has_marker && e->marker)
                dirs_note(m, e->marker, e->is_dir);
    }
    conn_release(c);
    out->v = NULL;
    out->n = 0;
    if (r == 0 && a.n) {
        out->v = calloc(a.n, sizeof *out->v);
        if (!out->v)
            r = -ENOMEM;
    }
    name_ent *e, *tmp;
    HASH_ITER(hh, a.names, e, tmp) {
        /* out->v has room for a.n entries, one per name; NULL only when a.names is empty
         * or r < 0: NOLINTNEXTLINE(clang-analyzer-core.NullDereference) */
        if (r == 0 && (out->v[out->n].name = strdup(e->name)) != NULL) {
            out->v[out->n].is_dir = e->is_dir;
            out->v[out->n++].also_dir = e->both;
        }
        else if (r == 0)
            r = -ENOMEM;
    }
    free_names(&a.names);
    if (r < 0) {
        dirs_release_list(out);
        return r;
    }
    if (out->n) /* qsort's base is nonnull: an empty listing has v == NULL */
        qsort(out->v, out->n, sizeof *out->v, by_name);
    return 0;
}

void dirs_release_list(kv_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].name);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* ---- mkdir, rmdir ---- */

/* rel's parent directory into out ("" for the mount root). */
static int parent_of(const char *rel, char *out, size_t outsz)
{
    const char *slash = strrchr(rel, '/');
    size_t pl = slash ? (size_t)(slash - rel) : 0;
    if (pl >= outsz)
        return -ENAMETOOLONG;
    memcpy(out, rel, pl);
    out[pl] = '\0';
    return 0;
}


int dirs_mkdir(kv_mount *m, const char *rel)
{
    if (!*rel)
        return -EEXIST;
    char marker[KV_KEY_MAX + 2];
    kv_conn *c;
    const kv_bucket *b;
    int r = ops_key_open(m, rel, 1, marker, sizeof marker, &c, &b);
    if (r < 0)
        return r;
    kv_stat st;
    char parent[KV_KEY_MAX + 1], pmarker[KV_KEY_MAX + 2];
    r = parent_of(rel, parent, sizeof parent);
    if (r == 0 && *parent && !(ops_key(m, parent, 1, pmarker, sizeof pmarker) == 0 &&
                               dirs_known(m, pmarker))) {
        r = ops_stat_on(c, b, m, parent, &st);
        if (r == 0 && !st.is_dir)
            r = -ENOTDIR;
    }
    /* A value of that name: EEXIST; a marker: the create-only write below says EEXIST.
     * Unless the read cache knows, the value's Get is sent ahead of the marker's create and
     * read after it (ahead.c: one round trip for both); a value found then takes the new
     * marker back (a delete expecting its revision) before EEXIST. Only this lookup's
     * ENOENT means "free": the parent's above must stay ENOENT. */
    char key[KV_KEY_MAX + 2];
    kv_ahead ahead = { 0 };
    int asked = 0;
    if (r == 0 && (r = ops_key(m, rel, 0, key, sizeof key)) == 0) {
        r = cache_stat(m, key, &st);
        if (r > 0 && (r = conn_bucket_limits(c, b)) == 0) {
            ahead_send(c, b, key, &ahead);
            asked = 1;
        } else if (r <= 0) {
            r = r == 0 ? -EEXIST : r == -ENOENT ? 0 : r;
        }
    }
    uint64_t rev = 0;
    if (r == 0)
        r = ops_publish(c, b, marker, "", 0, KV_REV_ABSENT, 0, &rev);
    int value = 0; /* a marker already there (EEXIST) or a failed create: no need to know */
    if (asked && r == 0)
        value = ahead_wait(&ahead);
    else if (asked)
        ahead_drop(&ahead);
    if (r == 0 && value != 0) {
        /* a value of that name (or no answer about one): the marker goes again */
        uint64_t gone = 0;
        if (ops_publish(c, b, marker, NULL, 0, rev, 1, &gone) < 0)
            log_at(LOG_WARN, "%s: mkdir: a value of that name appeared; the marker just "
                   "made could not be taken back (remove it with rmdir)", marker);
        r = value > 0 ? -EEXIST : value;
    }
    if (r == 0)
        cache_note(m, marker, "", 0, rev, 0);
    conn_release(c);
    if (r == 0)
        dirs_note(m, marker, 1);
    if (r < 0)
        log_at(r == -EEXIST || r == -ENOENT ? LOG_INFO : LOG_WARN, "%s: mkdir: %s", marker,
               strerror(-r));
    return r;
}

int dirs_rmdir(kv_mount *m, const char *rel)
{
    if (!*rel)
        return -EBUSY;
    char marker[KV_KEY_MAX + 2];
    kv_conn *c;
    const kv_bucket *b;
    int r = ops_key_open(m, rel, 1, marker, sizeof marker, &c, &b);
    if (r < 0)
        return r;
    for (int attempt = 0; attempt < 4; attempt++) {
        r = dirs_has_below(c, b, m, marker, marker);
        if (r == 1) {
            r = -ENOTEMPTY;
            break;
        }
        kv_value v = { 0 };
        if (r == 0 && (r = lane_get(c, b, marker, &v)) == -ENOENT) {
            kv_stat st;
            r = ops_stat_on(c, b, m, rel, &st) == 0 && !st.is_dir ? -ENOTDIR : -ENOENT;
            break;
        }
        if (r < 0)
            break;
        uint64_t seen = v.rev, rev = 0;
        lane_release(&v);
        r = ops_publish(c, b, marker, NULL, 0, seen, 1, &rev);
        if (r == 0)
            cache_note(m, marker, NULL, 0, rev, 1);
        if (r != -EEXIST)
            break;
    }
    conn_release(c);
    if (r == 0 || r == -ENOENT)
        dirs_note(m, marker, 0);
    if (r < 0)
        log_at(r == -ENOENT ? LOG_INFO : LOG_WARN, "%s: rmdir: %s", marker, strerror(-r));
    return r;
}

/* ---- parents ---- */

int dirs_parent(kv_mount *m, const char *rel)
{
    char parent[KV_KEY_MAX + 1], marker[KV_KEY_MAX + 2];
    if (ops_key(m, rel, 1, marker, sizeof marker) == 0 && dirs_known(m, marker))
        return -EISDIR; /* rel itself is a directory this process knows */
    int r = parent_of(rel, parent, sizeof parent);
    if (r < 0 || !*parent)
        return r; /* the mount root always exists */
    if ((r = ops_key(m, parent, 1, marker, sizeof marker)) < 0)
        return r;
    if (dirs_known(m, marker))
        return 0;
    kv_conn *c;
    const kv_bucket *b;
    if ((r = ops_open(m, marker, &c, &b)) < 0)
        return r;
    kv_stat st;
    r = ops_stat_on(c, b, m, parent, &st); /* notes the marker when it is one */
    if (r == 0 && !st.is_dir)
        r = -ENOTDIR;
    /* a directory not known yet: rel itself may be one (one Get more, until it is known) */
    char self[KV_KEY_MAX + 2];
    if (r == 0 && ops_key(m, rel, 1, self, sizeof self) == 0 &&
        ops_entry_stat(c, m, b, self, 1, &st) == 0) {
        dirs_note(m, self, 1);
        r = -EISDIR;
    }
    conn_release(c);
    return r;
}

int dirs_mkparents(kv_mount *m, const char *rel)
{
    char parent[KV_KEY_MAX + 1], marker[KV_KEY_MAX + 2];
    int r = parent_of(rel, parent, sizeof parent);
    if (r < 0 || !*parent)
        return r;
    if ((r = ops_key(m, parent, 1, marker, sizeof marker)) < 0 || dirs_known(m, marker))
        return r;
    if ((r = dirs_mkparents(m, parent)) < 0) /* outermost first */
        return r;
    kv_conn *c;
    const kv_bucket *b;
    if ((r = ops_open(m, marker, &c, &b)) < 0)
        return r;
    /* A value of the parent's name stays (an object store keeps both, and so does the
     * sidecar); its marker is then not noted as known, so stat answers the value. */
    char key[KV_KEY_MAX + 2];
    kv_stat st;
    int value = ops_key(m, parent, 0, key, sizeof key) == 0 &&
                ops_entry_stat(c, m, b, key, 0, &st) == 0;
    uint64_t rev = 0;
    r = ops_publish(c, b, marker, "", 0, KV_REV_ABSENT, 0, &rev);
    conn_release(c);
    if (r == 0)
        cache_note(m, marker, "", 0, rev, 0);
    if (r == -EEXIST)
        r = 0; /* another writer made it: what we wanted */
    if (r == 0 && !value)
        dirs_note(m, marker, 1);
    return r;
}
