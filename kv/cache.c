/* cache.c: the watch-fed read cache of a KV_MOUNT_WATCH mount (SPEC "Read cache").
 *
 * One mirror per mount: a uthash table key -> (value, revision, time, deleted), fed by a
 * KV watcher on the mount's keys ("<prefix>.>", or the whole bucket without a prefix,
 * deletes and purges included) that runs in a thread of ours, created with every signal
 * blocked (so are the subscription threads nats.c starts from it). ops_get() asks
 * cache_get() first; the mirror answers only while it is *fresh*:
 *
 *   fresh = the watcher delivered its "initial values done" marker (a NULL entry), and the
 *           connection generation (conn_generation(): bumped on every disconnect, reconnect
 *           and new connection) is the one the watcher was created under.
 *
 * Otherwise the caller makes a direct Get. nats.c 3.4.1 watchers go silent after a
 * reconnect (their ordered consumer is gone with the server's state), so the thread
 * notices a generation change within WATCH_POLL_MS, drops the watcher, clears the mirror
 * and makes a new one on the current connection; until that one has delivered its initial
 * values, gets are direct again. The thread never connects: it waits for an operation to
 * have made the connection (conn_current()).
 *
 * A served get returns the mirror's revision, which ops_get remembers exactly as a direct
 * Get's, so compare-and-set still guards every write: a stale read can cause a conflict,
 * never a lost update. Commits and removes of this process are written into the mirror
 * (cache_note) so a process reads its own writes. An entry is only ever replaced by one
 * with a revision at least as new, so a late watcher delivery cannot undo a newer note.
 *
 * Locks: caches_mu guards the list of caches (for fork) and each mount's cache pointer at
 * creation; cache.mu guards a mirror's table, ready, gen. caches_mu -> cache.mu; neither
 * is held across a call into nats.c or while taking conn_mu.
 *
 * rand(): the watcher's creation and destruction run inside a hygiene guard that blocks
 * signals (nats.c may start threads) but leaves the rand() state alone: only a connect
 * swaps it (hygiene.c), and this thread never connects. So background work of ours never
 * hands a program thread's rand() the private state (it did, before: a flaky test showed
 * it). The long kvWatcher_Next waits run unguarded.
 *
 * Fork: the child has no watcher thread. cache_after_fork_child() abandons every mirror's
 * table (the thread may have been mid-update; leaked on purpose), re-initialises the locks
 * and marks the caches stopped: the child's gets are direct until its first get restarts a
 * watcher.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HASH_NONFATAL_OOM 1
static __thread int add_failed;
#define uthash_nonfatal_oom(obj) (add_failed = 1)
#include <uthash.h>

#include "common/log.h"
#include "kv/internal.h"

#define WATCH_POLL_MS 50        /* longest a silent watcher goes unchecked */
#define RETRY_MS 100            /* wait before another attempt when not connected */

typedef struct cache_entry {
    UT_hash_handle hh;
    void *data;                 /* NULL when len is 0 */
    size_t len;
    uint64_t rev;
    int64_t time_ns;
    int deleted;                /* a delete or purge marker: the key is absent */
    char key[];                 /* NUL-terminated */
} cache_entry;

struct kv_cache {
    pthread_mutex_t mu;
    cache_entry *table;         /* mu */
    int ready;                  /* mu: initial values delivered for generation gen */
    uint64_t gen;               /* mu: conn_generation() the watcher was created under */
    int running;                /* caches_mu: a watcher thread exists in this process */
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

/* ---- the mirror ---- */

static void entry_free(cache_entry *e)
{
    free(e->data);
    free(e);
}

static void table_clear(cache_entry **t)
{
    cache_entry *e, *tmp;
    HASH_ITER(hh, *t, e, tmp) {
        /* HASH_DEL then free of the iterated entry is uthash's idiom (the analyzer loses
         * track of tmp): NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
        HASH_DEL(*t, e);
        entry_free(e);
    }
}

/* Puts key's new state into k's table unless the table already has a newer revision.
 * Called with k->mu held; data is copied before the lock by the caller (copy). */
static void table_set_locked(kv_cache *k, const char *key, void **data, size_t len,
                             uint64_t rev, int64_t time_ns, int deleted)
{
    cache_entry *e = NULL;
    size_t kl = strlen(key);
    HASH_FIND(hh, k->table, key, kl, e);
    if (e && e->rev > rev)
        return;
    if (!e) {
        if ((e = calloc(1, sizeof *e + kl + 1)) == NULL)
            return;
        memcpy(e->key, key, kl + 1);
        add_failed = 0;
        HASH_ADD_KEYPTR(hh, k->table, e->key, kl, e);
        if (add_failed) {
            free(e);
            return;
        }
    }
    free(e->data);
    e->data = *data;
    *data = NULL;
    e->len = len;
    e->rev = rev;
    e->time_ns = time_ns;
    e->deleted = deleted;
}

static void note(kv_cache *k, const char *key, const void *data, size_t len, uint64_t rev,
                 int64_t time_ns, int deleted)
{
    void *copy = NULL;
    if (len && !deleted) {
        if ((copy = malloc(len)) == NULL) {
            /* Cannot mirror the new value: drop the key so it is never served stale. */
            deleted = -1;
        } else {
            memcpy(copy, data, len);
        }
    }
    pthread_mutex_lock(&k->mu);
    if (deleted < 0) {
        cache_entry *e = NULL;
        HASH_FIND(hh, k->table, key, strlen(key), e);
        if (e) {
            HASH_DEL(k->table, e);
            entry_free(e);
        }
        k->ready = 0;       /* the key would read as absent: no longer a faithful mirror */
    } else {
        table_set_locked(k, key, &copy, deleted ? 0 : len, rev, time_ns, deleted);
    }
    pthread_mutex_unlock(&k->mu);
    free(copy);
}

/* ---- the watcher thread ---- */

/* Watches on c until the generation moves on, the connection closes or the watcher fails.
 * The mirror is cleared first and is fresh from the initial-values marker on. */
static void watch_once(kv_cache *k, kv_conn *c, const kv_bucket *b, uint64_t gen)
{
    const kv_mount *m = k->m;
    pthread_mutex_lock(&k->mu);
    table_clear(&k->table);
    k->ready = 0;
    k->gen = gen;
    pthread_mutex_unlock(&k->mu);

    kvWatchOptions wo;
    kvWatchOptions_Init(&wo);
    kvWatcher *w = NULL;
    char filter[KV_KEY_MAX + 8];
    kv_guard g;
    guard_enter(&g, GUARD_THREADS); /* a subscription: nats.c may start threads */
    natsStatus s;
    if (m->prefix) {
        snprintf(filter, sizeof filter, "%s.>", m->prefix);
        s = kvStore_Watch(&w, b->kv, filter, &wo);
    } else {
        s = kvStore_WatchAll(&w, b->kv, &wo);
    }
    const char *why = NULL;
    if (s != NATS_OK)
        kv_errmap(s, 0, &why);
    guard_leave(&g);
    if (s != NATS_OK) {
        log_at(LOG_INFO, "read cache %s%s%s: cannot watch (%s); gets stay direct",
               m->bucket, m->prefix ? "/" : "", m->prefix ? m->prefix : "", why);
        return;
    }
    log_at(LOG_DEBUG, "read cache %s%s%s: watcher created", m->bucket, m->prefix ? "/" : "",
           m->prefix ? m->prefix : "");
    size_t n = 0;
    for (;;) {
        kvEntry *e = NULL;
        s = kvWatcher_Next(&e, w, WATCH_POLL_MS);
        if (s != NATS_OK && s != NATS_TIMEOUT)
            break;
        if (s == NATS_OK && !e) {
            pthread_mutex_lock(&k->mu);
            if (k->gen == gen)
                k->ready = 1;
            pthread_mutex_unlock(&k->mu);
            log_at(LOG_INFO, "read cache %s%s%s: caught up (%zu entries); serving reads",
                   m->bucket, m->prefix ? "/" : "", m->prefix ? m->prefix : "", n);
        } else if (s == NATS_OK) {
            kvOperation op = kvEntry_Operation(e);
            note(k, kvEntry_Key(e), kvEntry_Value(e), (size_t)kvEntry_ValueLen(e),
                 kvEntry_Revision(e), kvEntry_Created(e),
                 op == kvOp_Delete || op == kvOp_Purge);
            kvEntry_Destroy(e);
            n++;
        }
        if (conn_generation() != gen || natsConnection_IsClosed(c->nc))
            break;
    }
    pthread_mutex_lock(&k->mu);
    k->ready = 0;
    pthread_mutex_unlock(&k->mu);
    log_at(LOG_INFO, "read cache %s%s%s: watcher dropped (connection %s); gets are direct "
           "until a new one has caught up", m->bucket, m->prefix ? "/" : "",
           m->prefix ? m->prefix : "", conn_generation() != gen ? "changed" : "lost");
    guard_enter(&g, GUARD_THREADS);
    kvWatcher_Destroy(w);
    guard_leave(&g);
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
        /* Pause before the next attempt unless the watcher ended for a new generation
         * that is already connected (the common reconnect: go again at once). */
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
    if (!(m->flags & KV_MOUNT_WATCH) || forked)
        return;
    kv_cache *k = cache_of(m);
    if (k && __atomic_load_n(&k->running, __ATOMIC_ACQUIRE))
        return;
    pthread_mutex_lock(&caches_mu);
    k = cache_of(m);
    if (!k && (k = calloc(1, sizeof *k)) != NULL) {
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
                   "gets stay direct", m->bucket, e);
    }
    pthread_mutex_unlock(&caches_mu);
}

int cache_get(kv_mount *m, const char *key, kv_value *out)
{
    kv_cache *k = cache_of(m);
    if (!k)
        return 1;
    int r = 1;
    pthread_mutex_lock(&k->mu);
    if (k->ready && k->gen == conn_generation()) {
        cache_entry *e = NULL;
        HASH_FIND(hh, k->table, key, strlen(key), e);
        if (!e || e->deleted) {
            r = -ENOENT;
        } else {
            void *data = e->len ? malloc(e->len) : NULL;
            if (e->len && !data) {
                r = 1;          /* let the direct path report it */
            } else {
                if (e->len)
                    memcpy(data, e->data, e->len);
                out->data = data;
                out->len = e->len;
                out->rev = e->rev;
                out->mtime_ns = e->time_ns;
                r = 0;
            }
        }
    }
    pthread_mutex_unlock(&k->mu);
    return r;
}

void cache_note(kv_mount *m, const char *key, const void *data, size_t len, uint64_t rev,
                int deleted)
{
    kv_cache *k = cache_of(m);
    if (!k)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    note(k, key, data, len, rev, (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec, deleted);
}

void cache_after_fork_child(void)
{
    forked = 1;
    pthread_mutex_init(&caches_mu, NULL);
    for (kv_cache *k = caches; k; k = k->next) {
        pthread_mutex_init(&k->mu, NULL);
        k->table = NULL;        /* abandoned: the parent's thread may have been inside it */
        k->ready = 0;
        k->running = 0;
    }
}

int cache_each(kv_mount *m, int (*fn)(void *arg, const char *key, const void *data, size_t len),
               void *arg)
{
    kv_cache *k = cache_of(m);
    if (!k)
        return 1;
    int r = 1;
    pthread_mutex_lock(&k->mu);
    if (k->ready && k->gen == conn_generation()) {
        r = 0;
        for (cache_entry *e = k->table; e && r == 0; e = e->hh.next)
            if (!e->deleted)
                r = fn(arg, e->key, e->data, e->len);
    }
    pthread_mutex_unlock(&k->mu);
    return r;
}
