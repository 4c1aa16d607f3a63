/* cache.c: the read cache's mirror of a mount (SPEC "Read cache"): read=watch (keys and
 * values) or read=meta (keys and metadata only, for key spaces whose values do not fit).
 *
 * One mirror per mount, fed by a walk (walk.c) over the mount's keys ("<prefix>.>", or the
 * whole bucket without a prefix; deletes and purges included; headers only for meta) that
 * runs in a thread of ours, created with every signal blocked (so are the subscription
 * threads nats.c starts from it). The mirror answers only while it is *fresh*:
 *
 *   fresh = the walk delivered its "initial values done" marker, and the connection
 *           generation (conn_generation(): bumped on every disconnect, reconnect and new
 *           connection) is the one the walk was started under.
 *
 * Otherwise callers make direct requests. nats.c 3.4.1 subscriptions go silent after a
 * reconnect (their ordered consumer is gone with the server's state), so the thread
 * notices a generation change within WATCH_POLL_MS, drops the walk, clears the mirror and
 * starts a new one on the current connection; until that one has delivered its initial
 * values, everything is direct again. The thread never connects: it waits for an operation
 * to have made the connection (conn_current()).
 *
 * What a fresh mirror answers (ops.c and dirs.c ask it first):
 *   cache_get       watch: the value; meta: only "missing" (a present value is a direct Get);
 *   cache_stat      size, revision, time of a value or a directory marker, or "missing":
 *                   stat, exists, isdir, negative lookups, the parent checks of open/mkdir;
 *   cache_children  the names one level below a directory, from its own list of children:
 *                   a listing costs O(entries in that directory), not O(keys);
 *   cache_each      every value (watch): the sidecar's /query.
 * A served get returns the mirror's revision, which ops_get remembers exactly as a direct
 * Get's, so compare-and-set still guards every write: a stale read can cause a conflict,
 * never a lost update. Writes, removes and markers of this process are noted into the
 * mirror at once (cache_note), so a process sees its own changes. A key's state is only
 * ever replaced by one with a revision at least as new, so a late delivery cannot undo a
 * newer note; a key this process deleted keeps a tombstone until the walk delivers that
 * delete (then it goes: the walk delivers in stream order, nothing older can follow).
 *
 * The index is mindex.c's (a node per key component, a directory's children in its own
 * list, one hash table by parent and name; about 80 bytes a node): a directory written by
 * another client without markers is still listed (and the listing repairs its marker,
 * dirs.c).
 *
 * Locks: caches_mu guards the list of caches (for fork) and each mount's cache pointer at
 * creation; cache.mu guards a mirror's index, ready, gen. caches_mu -> cache.mu (dirs.c's
 * known_mu is never taken under either); none is held across a call into
 * nats.c or while taking conn_mu.
 *
 * rand(): the walk's creation and destruction run inside a hygiene guard that blocks
 * signals (nats.c may start threads) but leaves the rand() state alone: only a connect
 * swaps it (hygiene.c), and this thread never connects. So background work of ours never
 * hands a program thread's rand() the private state (it did, before: a flaky test showed
 * it).
 *
 * Fork: the child has no walk thread. cache_after_fork_child() abandons every mirror's
 * index (the thread may have been mid-update; leaked on purpose), re-initialises the locks
 * and marks the caches stopped: the child's operations are direct.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <malloc.h>

#include "common/log.h"
#include "kv/internal.h"

#define WATCH_POLL_MS 50        /* longest a silent watcher goes unchecked */
#define RETRY_MS 100            /* wait before another attempt when not connected */

struct kv_cache {
    pthread_mutex_t mu;
    mindex *ix;                 /* mu: the keys (mindex.c); NULL in a forked child */
    int ready;                  /* mu: initial values delivered for generation gen */
    int broken;                 /* mu: a change could not be mirrored: not fresh until the
                                   next walk */
    uint64_t gen;               /* mu: conn_generation() the walk was started under */
    uint64_t walk_seq;          /* mu: the highest stream sequence the walk has applied */
    int running;                /* caches_mu: a walk thread exists in this process */
    const kv_mount *m;
    struct kv_cache *next;      /* caches_mu */
};

static pthread_mutex_t caches_mu = PTHREAD_MUTEX_INITIALIZER;
static struct kv_cache *caches; /* caches_mu */

static void nap_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static kv_cache *cache_of(const kv_mount *m)
{
    return __atomic_load_n(&m->cache, __ATOMIC_ACQUIRE);
}

static int fresh(const kv_cache *k)
{
    return k->ready && !k->broken && k->gen == conn_generation();
}

/* Records key's new state; copies data first under read=watch (NULL data: headers only). */
static void note(kv_cache *k, const char *key, const void *data, size_t len, uint64_t rev,
                 int64_t time_ns, int deleted, int local)
{
    void *copy = NULL;
    int lost = 0;
    if ((k->m->flags & KV_MOUNT_WATCH) && len && !deleted) {
        if (!data || (copy = malloc(len)) == NULL)
            lost = 1; /* cannot mirror the value */
        else
            memcpy(copy, data, len);
    }
    pthread_mutex_lock(&k->mu);
    /* The walk delivers in stream order: once it has applied rev, it has applied this
     * change and every later one, so a local note of it arrives late (a commit notes after
     * its publish returns) and could only bring back a state another client has since
     * replaced or deleted, for good (a deleted key's node is freed, the late note would
     * make it anew). */
    int late = local && rev <= k->walk_seq;
    if (lost && !late)
        k->broken = 1;
    else if (!late && k->ix &&
             mindex_set(k->ix, key, &copy, len, rev, time_ns, !deleted, local) < 0)
        k->broken = 1; /* the key would read as missing: no longer a faithful mirror */
    if (!local && rev > k->walk_seq)
        k->walk_seq = rev;
    pthread_mutex_unlock(&k->mu);
    free(copy);
}

/* ---- the walk thread ---- */

static const char *label(const kv_mount *m, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s%s%s (read=%s)", m->bucket, m->prefix ? "/" : "",
             m->prefix ? m->prefix : "", (m->flags & KV_MOUNT_WATCH) ? "watch" : "meta");
    return out;
}

/* Walks on c until the generation moves on, the connection closes or the walk fails. The
 * mirror is cleared first and is fresh from the initial-values marker on. */
static void watch_once(kv_cache *k, kv_conn *c, const kv_bucket *b, uint64_t gen)
{
    char lb[KV_KEY_MAX + 64];
    const kv_mount *m = k->m;
    pthread_mutex_lock(&k->mu);
    mindex_clear(k->ix);
    k->walk_seq = 0;
    k->ready = 0;
    k->broken = 0;
    k->gen = gen;
    pthread_mutex_unlock(&k->mu);

    kv_walk *w = NULL;
    if (walk_open(c, b, m->prefix, (m->flags & KV_MOUNT_WATCH) != 0, &w) < 0) {
        log_at(LOG_INFO, "read cache %s: cannot watch; requests stay direct",
               label(m, lb, sizeof lb));
        return;
    }
    log_at(LOG_DEBUG, "read cache %s: watcher created", label(m, lb, sizeof lb));
    size_t n = 0;
    for (;;) {
        kv_rec e;
        int r = walk_next(w, WATCH_POLL_MS, &e, NULL);
        if (r < 0 && r != -ETIMEDOUT)
            break;
        if (r == 1) {
            /* the initial flood of messages is freed: give its pages back, so the process
             * keeps what the mirror holds, not the peak of its making */
            malloc_trim(0);
            pthread_mutex_lock(&k->mu);
            if (k->gen == gen)
                k->ready = 1;
            int broken = k->broken;
            pthread_mutex_unlock(&k->mu);
            log_at(broken ? LOG_WARN : LOG_INFO, "read cache %s: caught up (%zu entries)%s",
                   label(m, lb, sizeof lb), n,
                   broken ? ", but out of memory: requests stay direct" : "; serving reads");
        } else if (r == 0) {
            note(k, e.key, e.data, e.len, e.rev, e.time_ns, e.op != KV_OP_PUT, 0);
            n++;
        }
        if (conn_generation() != gen || natsConnection_IsClosed(c->nc))
            break;
    }
    pthread_mutex_lock(&k->mu);
    k->ready = 0;
    pthread_mutex_unlock(&k->mu);
    log_at(LOG_INFO, "read cache %s: watcher dropped (connection %s); requests are direct "
           "until a new one has caught up", label(m, lb, sizeof lb),
           conn_generation() != gen ? "changed" : "lost");
    walk_close(w);
}

static void *watch_main(void *arg)
{
    kv_cache *k = arg;
    for (;;) {
        kv_conn *c = NULL;
        const kv_bucket *b = NULL;
        if (conn_current(&c) < 0) {
            nap_ms(RETRY_MS);
            continue;
        }
        uint64_t gen = conn_generation();
        if (natsConnection_Status(c->nc) == NATS_CONN_STATUS_CONNECTED &&
            conn_bucket(c, k->m->bucket, &b) == 0)
            watch_once(k, c, b, gen);
        conn_release(c);
        /* Pause before the next attempt unless the walk ended for a new generation that is
         * already connected (the common reconnect: go again at once). */
        if (conn_generation() == gen)
            nap_ms(RETRY_MS);
    }
    return NULL;
}

/* ---- entry points ---- */

/* Set in a forked child: nats.c's library threads (timers, callbacks) do not exist there,
 * so no reconnect would ever be noticed and a mirror could go stale for good. A forked
 * child reads directly. */
static int forked;

void cache_start(kv_mount *m)
{
    if (!(m->flags & (KV_MOUNT_WATCH | KV_MOUNT_META)) || forked)
        return;
    kv_cache *k = cache_of(m);
    if (k && __atomic_load_n(&k->running, __ATOMIC_ACQUIRE))
        return;
    pthread_mutex_lock(&caches_mu);
    k = cache_of(m);
    char base[KV_KEY_MAX + 2];
    snprintf(base, sizeof base, "%s%s", m->prefix ? m->prefix : "", m->prefix ? "." : "");
    if (!k && (k = calloc(1, sizeof *k)) != NULL && (k->ix = mindex_new(base)) == NULL) {
        free(k);
        k = NULL;
    }
    if (k && !k->m) {
        pthread_mutex_init(&k->mu, NULL);
        k->m = m;
        k->next = caches;
        caches = k;
        __atomic_store_n(&m->cache, k, __ATOMIC_RELEASE);
    }
    if (k && !k->running) {
        pthread_attr_t attr;
        pthread_t t;
        kv_guard g;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        /* the thread inherits a mask with every signal blocked */
        guard_enter(&g, GUARD_THREADS);
        int e = pthread_create(&t, &attr, watch_main, k);
        guard_leave(&g);
        pthread_attr_destroy(&attr);
        if (e == 0)
            __atomic_store_n(&k->running, 1, __ATOMIC_RELEASE);
        else
            log_at(LOG_WARN, "read cache %s: cannot start the watcher thread (errno %d); "
                   "requests stay direct", m->bucket, e);
    }
    pthread_mutex_unlock(&caches_mu);
}

/* m's mirror, locked, when it is fresh; else NULL (nothing locked). */
static kv_cache *lock_fresh(const kv_mount *m)
{
    kv_cache *k = cache_of(m);
    if (!k)
        return NULL;
    pthread_mutex_lock(&k->mu);
    if (fresh(k))
        return k;
    pthread_mutex_unlock(&k->mu);
    return NULL;
}

int cache_get(kv_mount *m, const char *key, kv_value *out)
{
    kv_cache *k = lock_fresh(m);
    if (!k)
        return 1;
    mindex_entry e;
    int r = 1;
    if (mindex_get(k->ix, key, &e) < 0 || e.is_dir) {
        r = -ENOENT;
    } else if (m->flags & KV_MOUNT_WATCH) {
        void *data = e.len ? malloc(e.len) : NULL;
        if (!e.len || data) { /* else: let the direct path report it */
            if (e.len)
                memcpy(data, e.data, e.len);
            out->data = data;
            out->len = e.len;
            out->rev = e.rev;
            out->mtime_ns = e.time_ns;
            r = 0;
        }
    } /* read=meta: a present value is read by a direct Get */
    pthread_mutex_unlock(&k->mu);
    return r;
}

int cache_stat(const kv_mount *m, const char *key, kv_stat *out)
{
    kv_cache *k = lock_fresh(m);
    if (!k)
        return 1;
    mindex_entry e;
    int r = mindex_get(k->ix, key, &e);
    if (r == 0) {
        out->is_dir = e.is_dir;
        out->size = e.len;
        out->rev = e.rev;
        out->mtime_ns = e.time_ns;
    }
    pthread_mutex_unlock(&k->mu);
    return r;
}

int cache_children(const kv_mount *m, const char *base,
                   int (*fn)(void *arg, const char *key, int kind), void *arg)
{
    kv_cache *k = lock_fresh(m);
    if (!k)
        return 1;
    int r = mindex_children(k->ix, base, fn, arg);
    pthread_mutex_unlock(&k->mu);
    return r;
}

void cache_note(const kv_mount *m, const char *key, const void *data, size_t len, uint64_t rev,
                int deleted)
{
    kv_cache *k = cache_of(m);
    if (!k)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    note(k, key, data, len, rev, (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec, deleted, 1);
}

void cache_after_fork_child(void)
{
    forked = 1;
    pthread_mutex_init(&caches_mu, NULL);
    for (kv_cache *k = caches; k; k = k->next) {
        pthread_mutex_init(&k->mu, NULL);
        k->ix = NULL;           /* abandoned: the parent's thread may have been inside it */
        k->ready = 0;
        k->running = 0;
    }
}

int cache_each(kv_mount *m,
               int (*fn)(void *arg, const char *key, const void *data, size_t len, uint64_t rev),
               void *arg)
{
    kv_cache *k = (m->flags & KV_MOUNT_WATCH) ? lock_fresh(m) : NULL;
    if (!k)
        return 1;
    int r = mindex_each(k->ix, fn, arg);
    pthread_mutex_unlock(&k->mu);
    return r;
}
