/* bucket.c: the buckets bound on a connection (conn.c), and what is read of their streams.
 *
 * A bucket is bound (js_KeyValue: one request) the first time a connection needs it and kept
 * on the connection's list until the connection is freed. Its stream's limits (the largest
 * value, the duplicate window, replicas, history, direct gets) are read by the first
 * writable open or commit: one request more (conn_bucket_limits).
 *
 * bucket_mu guards every connection's bucket list, the limits' writing, and the two notes
 * below; it is never held across a network exchange.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "kv/internal.h"

static pthread_mutex_t bucket_mu = PTHREAD_MUTEX_INITIALIZER;
static int warned_replicas;     /* guarded by bucket_mu */
/* Buckets already reported missing: a missing bucket is configuration, reported once per
 * process (SPEC "Configuration"); later failures on it log at info. Guarded by bucket_mu. */
static char missing_reported[8][64];

static void bucket_free(kv_bucket *b)
{
    kvStore_Destroy(b->kv);
    free(b->name);
    free(b->stream);
    free(b);
}

void bucket_free_all(kv_bucket *list)
{
    for (kv_bucket *b = list, *next; b; b = next) {
        next = b->next;
        bucket_free(b);
    }
}

void bucket_after_fork_child(void)
{
    pthread_mutex_init(&bucket_mu, NULL);
}

typedef bool (*version_fn)(natsConnection *nc, int major, int minor, int update);

/* nats.c 3.4.1 keeps the server's version (from its INFO) private; the library exports the
 * helper it uses, natsConn_srvVersionAtLeast, which we look up rather than declare. */
int conn_server_older_than_2_11(natsConnection *nc)
{
    version_fn at_least = (version_fn)dlsym(RTLD_DEFAULT, "natsConn_srvVersionAtLeast");
    if (!at_least) {
        void *h = dlopen("libnats.so.3.4", RTLD_LAZY | RTLD_NOLOAD);
        at_least = h ? (version_fn)dlsym(h, "natsConn_srvVersionAtLeast") : NULL;
        if (h)
            dlclose(h);
    }
    return at_least ? !at_least(nc, 2, 11, 0) : -1;
}

static kv_bucket *find_locked(kv_conn *c, const char *name)
{
    for (kv_bucket *b = c->buckets; b; b = b->next)
        if (strcmp(b->name, name) == 0)
            return b;
    return NULL;
}

/* 1 the first time the missing bucket `name` is reported in this process. A name that
 * does not fit the table (or a full table) is always reported: never silent. */
static int missing_first(const char *name)
{
    int first = 1;
    size_t n = strlen(name);
    pthread_mutex_lock(&bucket_mu);
    for (size_t i = 0; n < sizeof missing_reported[0] && i < 8; i++) {
        if (strcmp(missing_reported[i], name) == 0) {
            first = 0;
            break;
        }
        if (!missing_reported[i][0]) {
            memcpy(missing_reported[i], name, n + 1);
            break;
        }
    }
    pthread_mutex_unlock(&bucket_mu);
    return first;
}

static int bind_bucket(kv_conn *c, const char *name, int quiet, kv_bucket **out)
{
    kv_bucket *b = calloc(1, sizeof *b);
    if (!b || !(b->name = strdup(name)) || asprintf(&b->stream, "KV_%s", name) < 0) {
        if (b)
            free(b->name);
        free(b);
        return -ENOMEM;
    }
    jsErrCode jerr = 0;
    kv_guard g;
    /* GUARD_REQUEST: the thread of nats.c's reply subscription, started by the first
     * request, was started by the connecting thread (the first caller's bucket bound there,
     * conn_bucket_first, or warm_up). The stream's limits are read later,
     * by a writable open or the first commit (conn_bucket_limits): one request. */
    guard_enter(&g, GUARD_REQUEST);
    natsStatus s = js_KeyValue(&b->kv, c->js, name);
    b->max_value = -1;
    const char *why = NULL;
    int r = s == NATS_OK ? 0 : kv_errmap(s, jerr, &why);
    guard_leave(&g);
    if (r < 0 && quiet) {
        r = -EIO;
    } else if (r < 0) {
        if (s == NATS_NOT_FOUND || jerr == 10059 || r == -ENOENT) {
            log_at(missing_first(name) ? LOG_ERROR : LOG_INFO,
                   "NATS KV bucket '%s' does not exist: create it first (`asya-state "
                   "bucket add %s`; the shim never creates buckets)", name, name);
            r = -EIO;
        } else {
            log_at(LOG_ERROR, "cannot bind NATS KV bucket '%s': %s", name, why);
            if (r == -EEXIST || r == -EFBIG)
                r = -EIO;
        }
    }
    if (r < 0) {
        bucket_free(b);
        return r;
    }
    *out = b;
    return 0;
}

int conn_bucket_history(kv_conn *c, const kv_bucket *b, int64_t *history)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    kv_guard g;
    guard_enter(&g, GUARD_REQUEST);
    natsStatus s = js_GetStreamInfo(&si, c->js, b->stream, NULL, &jerr);
    if (s == NATS_OK) {
        *history = si->Config->MaxMsgsPerSubject;
        jsStreamInfo_Destroy(si);
    }
    const char *why = NULL;
    int r = s == NATS_OK ? 0 : kv_errmap(s, jerr, &why);
    guard_leave(&g);
    if (r < 0)
        log_at(LOG_WARN, "cannot read NATS KV bucket '%s' history setting: %s", b->name, why);
    return r;
}

int conn_bucket_limits(kv_conn *c, const kv_bucket *cb)
{
    kv_bucket *b = (kv_bucket *)cb; /* only the limits below change, once, under bucket_mu */
    if (__atomic_load_n(&b->limits_read, __ATOMIC_ACQUIRE))
        return 0;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    kv_guard g;
    guard_enter(&g, GUARD_REQUEST);
    natsStatus s = js_GetStreamInfo(&si, c->js, b->stream, NULL, &jerr);
    int64_t max_value = -1, dup_window = 0, replicas = 1, history = 1;
    int direct = 0;
    if (s == NATS_OK) {
        direct = si->Config->AllowDirect;
        max_value = si->Config->MaxMsgSize > 0 ? si->Config->MaxMsgSize : -1;
        dup_window = si->Config->Duplicates;
        replicas = si->Config->Replicas;
        history = si->Config->MaxMsgsPerSubject;
        jsStreamInfo_Destroy(si);
    }
    const char *why = NULL;
    int r = s == NATS_OK ? 0 : kv_errmap(s, jerr, &why);
    guard_leave(&g);
    if (r < 0) {
        log_at(LOG_WARN, "cannot read NATS KV bucket '%s' limits: %s", b->name, why);
        return r;
    }
    int older = replicas > 1 ? conn_server_older_than_2_11(c->nc) : 0;
    pthread_mutex_lock(&bucket_mu);
    b->max_value = max_value;
    b->dup_window_ns = dup_window;
    b->replicas = replicas;
    b->history = history;
    b->direct = direct;
    __atomic_store_n(&b->limits_read, 1, __ATOMIC_RELEASE);
    int warn = older != 0 && !warned_replicas;
    if (warn)
        warned_replicas = 1;
    pthread_mutex_unlock(&bucket_mu);
    if (warn)
        log_at(LOG_WARN, "NATS KV bucket '%s' has %lld replicas and the server is %s: "
                         "compare-and-set is not exact under contention before nats-server 2.11",
               b->name, (long long)replicas, older > 0 ? "older than 2.11" : "of unknown version");
    return 0;
}

static int bucket_get(kv_conn *c, const char *name, int quiet, const kv_bucket **out)
{
    pthread_mutex_lock(&bucket_mu);
    kv_bucket *b = find_locked(c, name);
    pthread_mutex_unlock(&bucket_mu);
    if (b) {
        *out = b;
        return 0;
    }
    int r = bind_bucket(c, name, quiet, &b);
    if (r < 0)
        return r;
    pthread_mutex_lock(&bucket_mu);
    kv_bucket *other = find_locked(c, name);
    if (!other) {
        b->next = c->buckets;
        c->buckets = b;
    }
    pthread_mutex_unlock(&bucket_mu);
    if (other) {
        kv_guard g;
        guard_enter(&g, GUARD_REQUEST);
        bucket_free(b);
        guard_leave(&g);
        b = other;
    }
    *out = b;
    return 0;
}

int conn_bucket(kv_conn *c, const char *name, const kv_bucket **out)
{
    return bucket_get(c, name, 0, out);
}

int conn_bucket_first(kv_conn *c, const char *name)
{
    const kv_bucket *b;
    return bucket_get(c, name, 1, &b);
}

/* A direct get of a deleted stream meets nats-server's catch-all for the JetStream API,
 * which does not answer it: the request times out (NATS_TIMEOUT_MS). A commit finds no
 * responders, which otherwise means a replicated stream electing its leader (a retry
 * succeeds). The stream's info tells them apart at once: "stream not found" (10059). Its
 * wait is short (a live server answers in milliseconds): a frozen server, which times the
 * get out too, costs 0.5 s more, not a second NATS_TIMEOUT_MS. */
#define GONE_WAIT_MS 500
int bucket_gone(kv_conn *c, const kv_bucket *cb)
{
    kv_bucket *b = (kv_bucket *)cb; /* only gone changes, atomically */
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = kv_timeout_ms() < GONE_WAIT_MS ? kv_timeout_ms() : GONE_WAIT_MS;
    kv_guard g;
    guard_enter(&g, GUARD_REQUEST);
    natsStatus s = js_GetStreamInfo(&si, c->js, b->stream, &jo, &jerr);
    int gone = s == NATS_OK ? 0 : kv_errmap(s, jerr, NULL) == -EIO && jerr == 10059 ? 1 : -1;
    guard_leave(&g);
    jsStreamInfo_Destroy(si);
    if (gone < 0)
        return gone;
    int was = __atomic_exchange_n(&b->gone, gone, __ATOMIC_ACQ_REL);
    if (gone && !was)
        log_at(LOG_ERROR, "NATS KV bucket '%s' has been deleted: every operation on it fails "
               "with EIO until it is created again", b->name);
    else if (!gone && was)
        log_at(LOG_WARN, "NATS KV bucket '%s' is there again", b->name);
    return gone;
}
