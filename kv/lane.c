/* lane.c: requests whose replies go straight to the waiting thread.
 *
 * nats.c's natsConnection_Request hands a reply through two of its threads: the reader puts
 * it on the connection's shared reply subscription, whose delivery thread passes it to the
 * waiting caller, taking the connection's lock, which the woken caller then waits for too.
 * A lane is a synchronous subscription of ours, "<inbox>.L<n>.*": the reader hands the reply
 * to the caller waiting in natsSubscription_NextMsg, a thread fewer on every request's path
 * (on this project's 2-CPU machine, a wake-up and a lock hand-over fewer: docs/performance.md).
 *
 * Lanes are pooled per connection (c->lanes, under c->lane_mu, a leaf lock): a request takes
 * a free one, making one when none is free, and gives it back. So a connection has as many
 * lanes as requests were ever in flight on it at once, none per thread, and nothing to clean
 * up when a thread ends; conn_free destroys them with the connection. Each request's reply
 * subject ends in a fresh number: a reply that came after its request timed out waits on the
 * lane, and the next request on it drops it.
 *
 * lane_get is kv/'s one Get (a value's read, stat, a marker's check, the revision a remove
 * expects, mkdir's check ahead: ahead.c): a direct get on a lane on buckets that allow direct
 * gets, which every bucket nats.c 3.4.1, the nats CLI and `asya-state bucket add` create;
 * elsewhere, and until the bucket's limits say so, kvStore_Get.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "kv/internal.h"

struct kv_lane {
    natsSubscription *sub;
    char subj[80];          /* "<inbox>.L<n>.": the prefix of this lane's reply subjects */
    unsigned long seq;      /* the number of its latest request */
    kv_lane *next;          /* on c->lanes while free */
};

static kv_lane *lane_take(kv_conn *c)
{
    pthread_mutex_lock(&c->lane_mu);
    kv_lane *l = c->lanes;
    if (l)
        c->lanes = l->next;
    unsigned n = l ? 0 : ++c->lanes_made;
    pthread_mutex_unlock(&c->lane_mu);
    if (l)
        return l;
    l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    int w = snprintf(l->subj, sizeof l->subj, "%s.L%u.", c->inbox, n);
    char wild[sizeof l->subj + 2];
    if (w <= 0 || (size_t)w >= sizeof l->subj ||
        snprintf(wild, sizeof wild, "%s*", l->subj) <= 0 ||
        natsConnection_SubscribeSync(&l->sub, c->nc, wild) != NATS_OK) {
        free(l);
        return NULL;
    }
    /* a reply may be as large as the server's max_payload: never dropped as a slow consumer */
    natsSubscription_SetPendingLimits(l->sub, -1, -1);
    return l;
}

static void lane_give(kv_conn *c, kv_lane *l)
{
    pthread_mutex_lock(&c->lane_mu);
    l->next = c->lanes;
    c->lanes = l;
    pthread_mutex_unlock(&c->lane_mu);
}

void lane_free_all(kv_conn *c)
{
    for (kv_lane *l = c->lanes, *next; l; l = next) {
        next = l->next;
        natsSubscription_Destroy(l->sub);
        free(l);
    }
    c->lanes = NULL;
}

int lane_send(kv_conn *c, const char *subj, kv_lane_req *q)
{
    q->l = lane_take(c);
    if (!q->l)
        return -EAGAIN;
    snprintf(q->inbox, sizeof q->inbox, "%s%lu", q->l->subj, ++q->l->seq);
    if (natsConnection_PublishRequest(c->nc, subj, q->inbox, NULL, 0) != NATS_OK) {
        lane_drop(c, q);
        return -EAGAIN;
    }
    return 0;
}

natsStatus lane_wait(kv_conn *c, kv_lane_req *q, natsMsg **reply)
{
    int64_t deadline = clock_ns(CLOCK_MONOTONIC) + kv_timeout_ms() * 1000000;
    natsStatus s = NATS_OK;
    while (s == NATS_OK) {
        int64_t left = (deadline - clock_ns(CLOCK_MONOTONIC)) / 1000000;
        natsMsg *m = NULL;
        s = natsSubscription_NextMsg(&m, q->l->sub, left > 0 ? left : 1);
        if (s == NATS_OK && strcmp(natsMsg_GetSubject(m), q->inbox) == 0) {
            *reply = m;
            break;
        }
        natsMsg_Destroy(m); /* an earlier request's, come after it timed out */
    }
    lane_drop(c, q);
    return s;
}

void lane_drop(kv_conn *c, kv_lane_req *q)
{
    if (q->l)
        lane_give(c, q->l);
    q->l = NULL;
}

/* "2006-01-02T15:04:05.999999999Z07:00" (RFC 3339, as nats-server writes Nats-Time-Stamp)
 * to ns since the epoch; 0 when it is not that. */
static int64_t rfc3339_ns(const char *t)
{
    struct tm tm = { 0 };
    const char *p = strptime(t, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return 0;
    int64_t frac = 0, scale = 1000000000;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++)
            if (scale > 1) {
                scale /= 10;
                frac += (*p - '0') * scale;
            }
    int64_t off = 0;
    if (*p == '+' || *p == '-') {
        int h = 0, m = 0;
        if (sscanf(p + 1, "%2d:%2d", &h, &m) != 2)
            return 0;
        off = (*p == '+' ? 1 : -1) * (h * 3600 + m * 60);
    } else if (*p != 'Z') {
        return 0;
    }
    return ((int64_t)timegm(&tm) - off) * 1000000000 + frac;
}

int lane_direct_reply(natsMsg *msg, uint64_t *rev, int64_t *created_ns, const char **why)
{
    const char *status = NULL, *op = NULL, *v = NULL;
    if (natsMsg_GetDataLength(msg) == 0 &&
        natsMsgHeader_Get(msg, "Status", &status) == NATS_OK && status) {
        /* 404: no message; 503: nobody answers direct gets (the caller asks the plain way);
         * else the server refused, with its reason in Description */
        if (strcmp(status, "404") == 0)
            return 0;
        if (strcmp(status, "503") == 0)
            return -EAGAIN;
        if (natsMsgHeader_Get(msg, "Description", why) != NATS_OK || !*why)
            *why = status;
        return -EIO;
    }
    if (natsMsgHeader_Get(msg, "KV-Operation", &op) == NATS_OK && op &&
        (strcmp(op, "DEL") == 0 || strcmp(op, "PURGE") == 0))
        return 0;
    if (rev) {
        char *end = NULL;
        *rev = natsMsgHeader_Get(msg, "Nats-Sequence", &v) == NATS_OK && v
                   ? strtoull(v, &end, 10) : 0;
        *created_ns = natsMsgHeader_Get(msg, "Nats-Time-Stamp", &v) == NATS_OK && v
                          ? rfc3339_ns(v) : 0;
        if (*rev == 0 || !end || *end || *created_ns == 0) {
            *why = "a direct get's reply without a valid sequence or time";
            return -EIO;
        }
    }
    return 1;
}

/* The plain way: kvStore_Get, which knows from its binding whether the stream allows direct
 * gets, and asks the stream's leader when not. Its entry cannot be handed over as a natsMsg:
 * the value is copied (lane_release frees a copy). */
static int plain_get(const kv_bucket *b, const char *key, kv_value *out)
{
    kvEntry *e = NULL;
    kv_guard g;
    guard_enter(&g, GUARD_REQUEST);
    natsStatus s = kvStore_Get(&e, b->kv, key);
    const char *why = NULL;
    int r = s == NATS_OK ? 0 : kv_errmap(s, 0, &why);
    guard_leave(&g);
    if (r == 0) {
        *out = (kv_value){ .len = (size_t)kvEntry_ValueLen(e), .rev = kvEntry_Revision(e),
                           .mtime_ns = kvEntry_Created(e) };
        if (out->len && !(out->data = malloc(out->len)))
            r = -ENOMEM;
        else if (out->len)
            memcpy((void *)out->data, kvEntry_Value(e), out->len);
    }
    kvEntry_Destroy(e);
    if (r < 0 && r != -ENOENT)
        log_at(LOG_WARN, "%s: get failed: %s", key, why ? why : strerror(-r));
    return r;
}

void lane_release(kv_value *v)
{
    if (v->owner)
        natsMsg_Destroy(v->owner);
    else
        free((void *)v->data);
    v->data = NULL;
    v->owner = NULL;
    v->len = 0;
}

static int get_once(kv_conn *c, const kv_bucket *b, const char *key, kv_value *out)
{
    /* Whether the stream allows direct gets is known once its limits are read (the first
     * commit, or the sidecar's readiness probe): until then, and without them, the plain
     * way. A direct get nobody answers is not refused: it times out. */
    if (!__atomic_load_n(&b->limits_read, __ATOMIC_ACQUIRE) || !b->direct)
        return plain_get(b, key, out);
    char subj[KV_KEY_MAX + 300];
    int n = snprintf(subj, sizeof subj, "$JS.API.DIRECT.GET.%s.$KV.%s.%s", b->stream, b->name,
                     key);
    if (n < 0 || (size_t)n >= sizeof subj)
        return plain_get(b, key, out);
    kv_guard g;
    guard_enter(&g, GUARD_REQUEST);
    kv_lane_req q;
    if (lane_send(c, subj, &q) < 0) {
        guard_leave(&g);
        return plain_get(b, key, out); /* which says why if it fails too */
    }
    natsMsg *msg = NULL;
    natsStatus s = lane_wait(c, &q, &msg);
    const char *why = NULL;
    int r = s == NATS_OK ? 0 : kv_errmap(s, 0, &why);
    if (r == 0)
        r = lane_direct_reply(msg, &out->rev, &out->mtime_ns, &why);
    guard_leave(&g);
    if (r == 1) {
        /* The value stays in the message it arrived in: no copy (release_value frees it). */
        out->len = (size_t)natsMsg_GetDataLength(msg);
        out->data = out->len ? natsMsg_GetData(msg) : NULL;
        out->owner = msg;
        return 0;
    }
    natsMsg_Destroy(msg);
    if (r == -EAGAIN) /* 503: no responder now (a stream electing its leader, or gone) */
        return plain_get(b, key, out);
    if (r == 0)
        return -ENOENT;
    log_at(LOG_WARN, "%s: get failed: %s", key, why ? why : strerror(-r));
    return r;
}

int lane_get(kv_conn *c, const kv_bucket *b, const char *key, kv_value *out)
{
    /* a deleted bucket's get would time out: asked first while it is known gone */
    if (bucket_known_gone(b) && bucket_gone(c, b) == 1)
        return -EIO;
    int r = get_once(c, b, key, out);
    return r == -ETIMEDOUT && bucket_gone(c, b) == 1 ? -EIO : r;
}
