/* scan.c: every value under a prefix of a mount, for the sidecar's POST /query (kv.h scan).
 *
 * Two sources, chosen per call: the read cache's mirror when the mount has one and it is
 * fresh (cache_each: no request at all; read=watch only, read=meta holds no values), else
 * one pass over the mount's keys with values (walk.c's walk_once), deletes skipped. rel
 * prefixes are plain string prefixes and '/' is not a subject token separator, so the pass
 * covers the whole mount and filters here, as dirs_scan does for listings. Marker keys
 * ("dir/") and keys this connector would not have written (they do not decode) are left
 * out. The delete markers the pass skips go to tombs.c, as dirs_scan's do.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "kv/internal.h"
#include "kv/keycodec.h"

typedef struct scan_arg {
    const kv_mount *m;
    const char *base;   /* "prefix." or "" */
    size_t blen;
    const char *want;   /* rel prefix */
    size_t wlen;
    int (*fn)(void *arg, const char *rel, const void *data, size_t len);
    void *arg;
} scan_arg;

/* One key: decoded, filtered, handed on. */
static int scan_one(void *arg, const char *key, const void *data, size_t len, uint64_t rev)
{
    scan_arg *a = arg;
    if (!key || strncmp(key, a->base, a->blen) != 0)
        return 0;
    const char *rest = key + a->blen;
    size_t n = strlen(rest);
    char rel[KV_KEY_MAX + 1];
    if (n == 0 || rest[n - 1] == '/' || key_decode(rest, n, rel, sizeof rel) < 0)
        return 0; /* a marker, or not a key of ours */
    if (strncmp(rel, a->want, a->wlen) != 0)
        return 0;
    revmem_listed(a->m, key, rev); /* (the sidecar's one-client mode: as Asya's query) */
    return a->fn(a->arg, rel, len ? data : NULL, len);
}

static int scan_rec(void *arg, const kv_rec *e)
{
    return scan_one(arg, e->key, e->data, e->len, e->rev);
}

/* The ordered-consumer pass (walk.c): every live value under the mount, once. */
static int scan_server(kv_mount *m, scan_arg *a)
{
    kv_conn *c;
    const kv_bucket *b;
    int r = ops_open(m, a->blen ? a->base : "(bucket)", &c, &b);
    if (r < 0)
        return r;
    cache_start(m);
    const char *why = NULL;
    tombs t = { 0 };
    r = walk_once(c, b, m->prefix, 1, scan_rec, a, &t, &why);
    if (r >= 0)
        tombs_sweep(c, b, &t); /* delete markers do not pile up (tombs.c) */
    tombs_free(&t);
    conn_release(c);
    if (r < 0 && why) {
        if (r == -ENOENT || r == -EEXIST)
            r = -EIO;
        log_at(LOG_WARN, "%s*: scanning values failed: %s", a->base, why);
    }
    return r;
}

int scan_values(kv_mount *m, const char *rel_prefix,
                int (*fn)(void *arg, const char *rel, const void *data, size_t len), void *arg)
{
    char base[KV_KEY_MAX + 2];
    int n = snprintf(base, sizeof base, "%s%s", m->prefix ? m->prefix : "",
                     m->prefix ? "." : "");
    if (n < 0 || (size_t)n >= sizeof base)
        return -ENAMETOOLONG;
    scan_arg a = { m, base, (size_t)n, rel_prefix ? rel_prefix : "",
                   rel_prefix ? strlen(rel_prefix) : 0, fn, arg };
    if (m->flags & KV_MOUNT_WATCH) { /* a mirror with values */
        int r = cache_each(m, scan_one, &a);
        if (r != 1)
            return r;
    }
    return scan_server(m, &a);
}
