/* watch.c: the operations that look at a key's past and future rather than its present:
 * key (the raw key of a path), history (every stored revision of a key) and watch (the
 * changes under a path as they happen). Used by the `asya-state` command; the shim never
 * calls them.
 *
 * watch owns one kvWatcher at a time on the mount's key space ("<prefix>.>", or the whole
 * bucket), filters and decodes client-side, and recreates the watcher whenever the
 * connection generation (conn.c) moves: nats.c 3.4.1 watchers go silent after a reconnect.
 * The highest revision delivered is kept, so a recreated watcher's initial values repeat
 * nothing. Everything here runs in the caller's thread; no lock is held.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "kv/internal.h"
#include "kv/keycodec.h"

int watch_key(kv_mount *m, const char *rel, int marker, char *out, size_t outsz)
{
    return ops_key(m, rel, marker, out, outsz);
}

static int watch_op(kvOperation op)
{
    return op == kvOp_Delete ? KV_OP_DEL : op == kvOp_Purge ? KV_OP_PURGE : KV_OP_PUT;
}

int watch_history(kv_mount *m, const char *rel, int (*fn)(void *arg, const kv_event *ev),
                  void *arg)
{
    char key[KV_KEY_MAX + 2];
    kv_conn *c;
    const kv_bucket *b;
    int r = ops_key_open(m, rel, 0, key, sizeof key, &c, &b);
    if (r < 0)
        return r;
    kvWatchOptions wo;
    kvWatchOptions_Init(&wo);
    wo.Timeout = kv_timeout_ms();
    kvEntryList list = { 0 };
    kv_guard g;
    guard_enter(&g, GUARD_REQUEST); /* a synchronous subscription: no thread of nats.c */
    natsStatus s = kvStore_History(&list, b->kv, key, &wo);
    const char *why = NULL;
    r = s == NATS_OK ? 0 : kv_errmap(s, 0, &why);
    guard_leave(&g);
    if (r == 0 && list.Count == 0)
        r = -ENOENT;
    if (r < 0 && r != -ENOENT)
        log_at(LOG_WARN, "%s: history failed: %s", key, why ? why : "error");
    for (int i = 0; r == 0 && i < list.Count; i++) {
        kvEntry *e = list.Entries[i];
        kv_event ev = {
            .rel = rel,
            .op = watch_op(kvEntry_Operation(e)),
            .rev = kvEntry_Revision(e),
            .mtime_ns = kvEntry_Created(e),
            .len = (size_t)kvEntry_ValueLen(e),
        };
        ev.data = ev.len ? kvEntry_Value(e) : NULL;
        r = fn(arg, &ev);
    }
    guard_enter(&g, GUARD_REQUEST);
    kvEntryList_Destroy(&list);
    guard_leave(&g);
    conn_release(c);
    return r;
}

/* The watch in progress. */
typedef struct watch_state {
    kv_mount *m;
    const char *rel;
    size_t rellen;
    unsigned flags;
    int (*fn)(void *arg, const kv_event *ev);
    void *arg;
    uint64_t last;          /* highest revision delivered (or skipped as initial) */
} watch_state;

/* Decodes key into rel (marker keys: is_dir). 0, or -EINVAL for a key not under the
 * mount's prefix or not one this connector writes. */
static int watch_decode(const kv_mount *m, const char *key, char *rel, size_t relsz,
                        int *is_dir)
{
    size_t pl = m->prefix ? strlen(m->prefix) : 0;
    if (pl) {
        if (strncmp(key, m->prefix, pl) != 0 || key[pl] != '.')
            return -EINVAL;
        key += pl + 1;
    }
    size_t n = strlen(key);
    *is_dir = n > 0 && key[n - 1] == '/';
    if (*is_dir)
        n--;
    if (n == 0) {
        rel[0] = '\0';
        return *is_dir ? 0 : -EINVAL;
    }
    return key_decode(key, n, rel, relsz) < 0 ? -EINVAL : 0;
}

/* One entry from the watcher: filtered, decoded, handed to fn. fn's result, or 0. */
static int watch_entry(watch_state *w, kvEntry *e, int initial)
{
    uint64_t rev = kvEntry_Revision(e);
    if (rev <= w->last)
        return 0;
    w->last = rev;
    if (initial && !(w->flags & KV_WATCH_INITIAL))
        return 0;
    char rel[KV_KEY_MAX + 1];
    int is_dir = 0;
    const char *key = kvEntry_Key(e);
    if (!key || watch_decode(w->m, key, rel, sizeof rel, &is_dir) < 0)
        return 0;
    if (w->rellen && !(strncmp(rel, w->rel, w->rellen) == 0 &&
                       (rel[w->rellen] == '\0' || rel[w->rellen] == '/')))
        return 0;
    kv_event ev = {
        .rel = rel,
        .is_dir = is_dir,
        .op = watch_op(kvEntry_Operation(e)),
        .rev = rev,
        .mtime_ns = kvEntry_Created(e),
        .initial = initial,
    };
    return w->fn(w->arg, &ev);
}

static void watch_sleep_1s(void)
{
    struct timespec ts = { 1, 0 };
    nanosleep(&ts, NULL);
}

/* One watcher's life: from its creation until fn stops (returns fn's value, > or < 0 but
 * never the internal 1), an error, or a new connection generation (returns 1: recreate). */
static int watch_once(watch_state *w, const kv_bucket *b, int first)
{
    uint64_t gen = conn_generation();
    kvWatchOptions wo;
    kvWatchOptions_Init(&wo);
    wo.MetaOnly = true;
    wo.Timeout = kv_timeout_ms();
    kvWatcher *kw = NULL;
    kv_guard g;
    guard_enter(&g, GUARD_REQUEST); /* a synchronous subscription: no thread of nats.c */
    natsStatus s;
    if (w->m->prefix) {
        char filter[KV_KEY_MAX + 8];
        snprintf(filter, sizeof filter, "%s.>", w->m->prefix);
        s = kvStore_Watch(&kw, b->kv, filter, &wo);
    } else {
        s = kvStore_WatchAll(&kw, b->kv, &wo);
    }
    const char *why = NULL;
    int r = s == NATS_OK ? 0 : kv_errmap(s, 0, &why);
    guard_leave(&g);
    if (r < 0) {
        log_at(first ? LOG_ERROR : LOG_INFO, "watch of bucket '%s' failed: %s", b->name,
               why ? why : "error");
        return r == -ENOENT || r == -EEXIST ? -EIO : r;
    }
    int initial = 1;
    for (;;) {
        kvEntry *e = NULL;
        guard_enter(&g, GUARD_REQUEST);
        s = kvWatcher_Next(&e, kw, 1000);
        guard_leave(&g);
        if (s == NATS_TIMEOUT) {
            if (conn_generation() != gen) {
                r = 1;
                break;
            }
            continue;
        }
        if (s != NATS_OK) {
            r = 1; /* the watcher was closed under us (connection closed): make a new one */
            break;
        }
        if (!e) {
            initial = 0; /* the initial values are all in */
            continue;
        }
        r = watch_entry(w, e, initial && first);
        guard_enter(&g, GUARD_REQUEST);
        kvEntry_Destroy(e);
        guard_leave(&g);
        if (r != 0)
            break;
        if (conn_generation() != gen) {
            r = 1;
            break;
        }
    }
    guard_enter(&g, GUARD_REQUEST);
    kvWatcher_Destroy(kw);
    guard_leave(&g);
    return r;
}

int watch_run(kv_mount *m, const char *rel, unsigned flags,
              int (*fn)(void *arg, const kv_event *ev), void *arg)
{
    watch_state w = { .m = m, .rel = rel, .rellen = strlen(rel), .flags = flags, .fn = fn,
                      .arg = arg };
    char key[KV_KEY_MAX + 2];
    int r = ops_key(m, rel, 0, key, sizeof key);
    if (r < 0)
        return r;
    int first = 1;
    for (;;) {
        kv_conn *c;
        const kv_bucket *b;
        r = ops_open(m, key, &c, &b);
        if (r == 0) {
            r = watch_once(&w, b, first);
            conn_release(c);
        }
        if (r < 0 && first)
            return r;
        if (r != 1 && r >= 0)
            return r; /* fn stopped the watch */
        first = 0;
        log_at(LOG_INFO, "watch: the connection to NATS changed; watching again (a change "
                         "overwritten meanwhile shows as its latest revision)");
        if (r < 0)
            watch_sleep_1s();
    }
}
