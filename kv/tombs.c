/* tombs.c: the delete markers (tombstones) that key scans pass over, and their removal.
 *
 * An unlink writes a KV delete marker (SPEC "Operations": Delete), so that watchers (other
 * processes' read caches, `asya-state watch`, other NATS clients) see the delete. The marker
 * stays in the bucket's stream: every later scan of the mount's keys (listings, rmdir's
 * emptiness test: dirs_scan) receives it and skips it. After thousands of unlinks under a
 * prefix a listing spends most of its messages on markers. So a scan hands every marker it
 * skips to tombs_see, and tombs_sweep removes the ones the policy allows once the scan is
 * done:
 *
 *   TOMBS_AUTO (the default, every scan): when the scan skipped at least TOMBS_AUTO_MIN
 *     markers, up to TOMBS_AUTO_MAX of them (the oldest first: a scan delivers in stream
 *     order) per scan, only on buckets that keep one revision per key (history 1: the
 *     marker is all the key has left; with more, removing it takes the deleted key's older
 *     values along, which `asya-state history` would show);
 *   TOMBS_ALL (`asya-state check --fix`): every marker the scan saw, any history setting;
 *   TOMBS_OFF (`asya-state check` without --fix): counted, never removed.
 *
 * In every policy a marker younger than TOMBS_GRACE_S stays: a live watcher receives it
 * within milliseconds (measured under 15 ms, README "Read cache"), and one that reconnects
 * starts afresh (cache.c clears its mirror; nats.c's own kvStore_PurgeDeletes keeps markers
 * younger than 30 minutes for the same reason, for watchers that resume).
 *
 * Removal is a stream purge of the key's subject up to and including the marker's sequence
 * (the request js_PurgeStream sends, with filter = the key's subject and seq = marker + 1,
 * "up to but not including"), never of the whole subject: a value a concurrent writer put after the marker has a higher
 * sequence and survives. Compare-and-set stays exact: a create-only commit expects "no
 * message" (or the tombstone's sequence, then looks again: ops_publish), and succeeds after
 * the purge as before it; an update expecting a revision from before the delete conflicts
 * either way (the key's last sequence is 0 or the marker's, never the expected one). One
 * request per marker, pipelined (purge_all); TOMBS_AUTO_MAX bounds what one scan pays.
 *
 * Ages are on the server's clock: a marker's time is the server's timestamp, and "now" is the
 * server's too (the scan's consumer creation time, walk_once), so a client clock ahead of the
 * server's removes nothing early. The history setting is read again before every TOMBS_AUTO
 * sweep (one request, next to up to TOMBS_AUTO_MAX purges): `asya-state bucket edit
 * --history` takes effect in long-running processes.
 *
 * Without purge permission (typical least-privilege KV rights deny
 * "$JS.API.STREAM.PURGE.>"), nats-server drops the requests and sends the client a
 * "Permissions Violation" error, never a reply. So the first reply is awaited only
 * TOMBS_FIRST_REPLY_MS (the flush before it has made the round trip: a server that answers
 * has the requests); a sweep that removed nothing (no reply, every reply an error, no
 * connection) is remembered per bucket and TOMBS_AUTO tries again after TOMBS_RETRY_S, so
 * listings do not wait and warn on every scan (measured: 1.05-1.15 s for the first listing
 * after 300 deletes, 6-206 ms for the next; t_markers_tombs.sh).
 * `check --fix` always tries, and reports markers it could not remove as a problem, with
 * the reason (tombs_last's why).
 *
 * The policy is process-wide (set once by the CLI before it scans; read atomically); the
 * figures of the calling thread's last sweep are thread-local (tombs_last).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "kv/internal.h"

#define TOMBS_FIRST_REPLY_MS 1000 /* the wait for the first purge reply (the rest: timeout) */
#define TOMBS_RETRY_S 300          /* TOMBS_AUTO: no purge this long after a refusal */

static int policy = TOMBS_AUTO;
static __thread tombs_stats last;
static __thread char last_why[300];

void tombs_policy(int p)
{
    __atomic_store_n(&policy, p, __ATOMIC_RELAXED);
}

void tombs_last(tombs_stats *out)
{
    *out = last;
}

static size_t limit(void)
{
    switch (__atomic_load_n(&policy, __ATOMIC_RELAXED)) {
    case TOMBS_ALL:
        return SIZE_MAX;
    case TOMBS_AUTO:
        return TOMBS_AUTO_MAX;
    default:
        return 0;
    }
}

void tombs_see(tombs *t, const kv_rec *e)
{
    t->seen++;
    if (t->n >= limit())
        return;
    if (!t->now_ns)
        t->now_ns = clock_ns(CLOCK_REALTIME); /* the server gave no time (walk_once) */
    if (e->time_ns > t->now_ns - (int64_t)TOMBS_GRACE_S * 1000000000)
        return; /* too young: a watcher may not have it yet */
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        tomb *v = realloc(t->v, cap * sizeof *v);
        if (!v)
            return; /* out of memory: this one stays, no harm */
        t->v = v;
        t->cap = cap;
    }
    char *key = strdup(e->key);
    if (!key)
        return;
    t->v[t->n].key = key;
    t->v[t->n].seq = e->rev;
    t->n++;
}

/* Removes every marker of t at once: one purge request per marker (the JetStream API's
 * "$JS.API.STREAM.PURGE.<stream>" with a subject filter and a sequence bound, what
 * js_PurgeStream sends), all published before the first reply is awaited, the replies
 * collected on one inbox: one round trip for the lot instead of one per marker (1,000
 * purges took about 0.35 s one by one). *removed gets the purges that succeeded. */
static int purge_all(kv_conn *c, const kv_bucket *b, const tomb *v, size_t nv,
                     size_t *removed, const char **why)
{
    char api[300], inbox[80], body[KV_KEY_MAX + 400];
    snprintf(api, sizeof api, "$JS.API.STREAM.PURGE.%s", b->stream);
    natsSubscription *sub = NULL;
    kv_guard g;
    guard_enter(&g, GUARD_REQUEST); /* a synchronous subscription: no thread of nats.c */
    natsStatus s = conn_inbox(c, inbox, sizeof inbox) == 0 ? NATS_OK : NATS_ERR;
    if (s == NATS_OK) {
        s = natsConnection_SubscribeSync(&sub, c->nc, inbox);
    }
    guard_leave(&g);
    size_t sent = 0, answered = 0;
    guard_enter(&g, GUARD_REQUEST);
    for (; s == NATS_OK && sent < nv; sent++) {
        int n = snprintf(body, sizeof body, "{\"filter\":\"$KV.%s.%s\",\"seq\":%llu}",
                         b->name, v[sent].key, (unsigned long long)v[sent].seq + 1);
        if (n < 0 || (size_t)n >= sizeof body)
            break; /* cannot be: keys are at most KV_KEY_MAX bytes */
        s = natsConnection_PublishRequest(c->nc, api, inbox, body, n);
    }
    if (s == NATS_OK)
        s = natsConnection_FlushTimeout(c->nc, kv_timeout_ms());
    int64_t first = kv_timeout_ms() < TOMBS_FIRST_REPLY_MS ? kv_timeout_ms()
                                                           : TOMBS_FIRST_REPLY_MS;
    while (s == NATS_OK && answered < sent) {
        natsMsg *msg = NULL;
        s = natsSubscription_NextMsg(&msg, sub, answered ? kv_timeout_ms() : first);
        if (s == NATS_TIMEOUT && answered == 0) {
            /* no reply at all: denied (nats-server's -ERR says so), or no JetStream */
            const char *txt = NULL;
            natsStatus le = natsConnection_GetLastError(c->nc, &txt);
            snprintf(last_why, sizeof last_why, "no reply to purge requests in %lld ms%s%s",
                     (long long)first, le == NATS_NOT_PERMITTED && txt ? ": " : "",
                     le == NATS_NOT_PERMITTED && txt ? txt : " (may this NATS user publish "
                     "to $JS.API.STREAM.PURGE.>?)");
            *why = last_why;
            s = NATS_OK;
            break;
        }
        if (s != NATS_OK)
            break;
        answered++;
        /* {"type":"...stream_purge_response","success":true,"purged":1}, or an "error" */
        const char *d = natsMsg_GetData(msg);
        if (d && strstr(d, "\"success\":true"))
            (*removed)++;
        else if (!*why)
            *why = "the server refused a purge (see its reply with ASYA_STATE_LOG=debug)";
        if (d && !strstr(d, "\"success\":true"))
            log_at(LOG_DEBUG, "purge reply: %.200s", d);
        natsMsg_Destroy(msg);
    }
    natsSubscription_Destroy(sub);
    int r = s == NATS_OK ? 0 : kv_errmap(s, 0, why);
    guard_leave(&g);
    if (r == 0 && answered < nv)
        r = -EIO;
    return r;
}

int tombs_sweep(kv_conn *c, const kv_bucket *b, tombs *t)
{
    int p = __atomic_load_n(&policy, __ATOMIC_RELAXED);
    last = (tombs_stats){ .seen = t->seen };
    if (p == TOMBS_OFF || t->n == 0 || (p == TOMBS_AUTO && t->seen < TOMBS_AUTO_MIN))
        return 0;
    kv_bucket *mb = (kv_bucket *)b; /* only purge_refused changes, atomically */
    int64_t refused = __atomic_load_n(&mb->purge_refused, __ATOMIC_RELAXED);
    if (p == TOMBS_AUTO && refused &&
        clock_ns(CLOCK_MONOTONIC) - refused < (int64_t)TOMBS_RETRY_S * 1000000000) {
        log_at(LOG_DEBUG, "bucket %s: purges refused less than %d s ago: %zu delete markers "
               "left", b->name, TOMBS_RETRY_S, t->seen);
        return 0;
    }
    if (p == TOMBS_AUTO) {
        int64_t history = 0;
        int r = conn_bucket_history(c, b, &history); /* now: it may have been edited */
        if (r < 0)
            return r;
        if (history != 1) {
            log_at(LOG_DEBUG, "bucket %s keeps %lld revisions per key: %zu delete markers "
                   "left for `asya-state check --fix`", b->name, (long long)history, t->seen);
            return 0;
        }
    }
    last.removable = t->n;
    int r = 0;
    const char *why = NULL;
    /* in slices: the replies of one stay well inside a subscription's pending limits */
    for (size_t i = 0; i < t->n && r == 0; i += TOMBS_AUTO_MAX) {
        size_t n = t->n - i < TOMBS_AUTO_MAX ? t->n - i : TOMBS_AUTO_MAX;
        r = purge_all(c, b, t->v + i, n, &last.removed, &why);
    }
    if (r == 0 && last.removed < t->n)
        r = -EIO; /* refused by the server: why says so */
    if (r < 0)
        last.why = why ? why : strerror(-r);
    if (r < 0 && last.removed == 0) /* refused: not again before TOMBS_RETRY_S */
        __atomic_store_n(&mb->purge_refused, clock_ns(CLOCK_MONOTONIC), __ATOMIC_RELAXED);
    if (r < 0)
        log_at(LOG_WARN, "bucket %s: removing delete markers: %zu of %zu removed: %s",
               b->name, last.removed, t->n, why ? why : strerror(-r));
    else
        log_at(LOG_INFO, "bucket %s: %zu delete markers seen by a scan, %zu removed",
               b->name, t->seen, last.removed);
    return r;
}

void tombs_free(tombs *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i].key);
    free(t->v);
    *t = (tombs){ 0 };
}
