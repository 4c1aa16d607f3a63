/* walk.c: every key under a mount's prefix, one ordered consumer: the one loop behind
 * listings (dirs_scan, headers only), value scans (scan.c) and the read cache's mirror
 * (cache.c, followed after the initial values).
 *
 * Our own ordered consumer on "$KV.<bucket>.<prefix>.>" (or "$KV.<bucket>.>"), delivering the
 * last entry of each key first (DeliverLastPerSubject), then every change. Not kvStore_Watch:
 *  - headers only (HeadersOnly), a value's length is the "Nats-Msg-Size" header, which
 *    nats.c 3.4.1's kvEntry does not expose (its MetaOnly watcher gives length 0);
 *  - delete and purge markers come to us and the callers skip them: 3.4.1's kvWatcher_Next
 *    deducts the elapsed time again for every marker it skips itself, and times out after a
 *    few thousand.
 * "Initial values done" is decided as kvStore_Watch does: the first entry's pending count
 * (NumPending of its metadata) says how many follow; done after that many more, or at an
 * entry with none pending. An empty key space delivers nothing: the consumer's info (one
 * request, at open) says so.
 *
 * Not thread-safe: one walker, one thread. Every call into nats.c inside a guard.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "kv/internal.h"

struct kv_walk {
    natsSubscription *sub;
    size_t pre;             /* strlen("$KV.<bucket>.") */
    int values;             /* values delivered, not headers only */
    int done;               /* initial values delivered (the marker given out) */
    int marker_due;         /* the next walk_next gives the marker */
    uint64_t received, initial;
    natsMsg *msg;           /* the entry handed out last, destroyed by the next call */
    int64_t server_ns;      /* the consumer's creation time: the server's clock at open */
};

int walk_open(kv_conn *c, const kv_bucket *b, const char *prefix, int values, kv_walk **out)
{
    char subj[KV_KEY_MAX + 300];
    int n = prefix && *prefix ? snprintf(subj, sizeof subj, "$KV.%s.%s.>", b->name, prefix)
                              : snprintf(subj, sizeof subj, "$KV.%s.>", b->name);
    if (n < 0 || (size_t)n >= sizeof subj)
        return -ENAMETOOLONG;
    kv_walk *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->pre = strlen(b->name) + 5;
    w->values = values;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverLastPerSubject;
    so.Config.HeadersOnly = !values;
    jsErrCode jerr = 0;
    jsConsumerInfo *ci = NULL;
    const char *why = NULL;
    kv_guard g;
    guard_enter(&g, GUARD_REQUEST); /* a synchronous subscription: no thread of nats.c */
    natsStatus s = js_SubscribeSync(&w->sub, c->js, subj, NULL, &so, &jerr);
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(w->sub, -1, -1);
    if (s == NATS_OK)
        s = natsSubscription_GetConsumerInfo(&ci, w->sub, NULL, &jerr);
    int r = s == NATS_OK ? 0 : kv_errmap(s, jerr, &why);
    if (r == 0 && ci && ci->NumPending == 0 && ci->Delivered.Consumer == 0)
        w->marker_due = 1; /* nothing under the prefix */
    if (r == 0 && ci)
        w->server_ns = ci->Created; /* UTC ns, set by the server */
    jsConsumerInfo_Destroy(ci);
    if (r < 0 && w->sub) {
        natsSubscription_Unsubscribe(w->sub);
        natsSubscription_Destroy(w->sub);
    }
    guard_leave(&g);
    if (r < 0) {
        if (r == -ENOENT || r == -EEXIST)
            r = -EIO;
        log_at(LOG_WARN, "%s: cannot walk the keys: %s", subj, why ? why : "error");
        free(w);
        return r;
    }
    *out = w;
    return 0;
}

int walk_next(kv_walk *w, int64_t timeout_ms, kv_rec *rec, const char **why)
{
    kv_guard g;
    guard_enter(&g, GUARD_REQUEST);
    natsMsg_Destroy(w->msg);
    w->msg = NULL;
    guard_leave(&g);
    if (w->marker_due) {
        w->marker_due = 0;
        w->done = 1;
        return 1;
    }
    natsMsg *msg = NULL;
    jsMsgMetaData *md = NULL;
    guard_enter(&g, GUARD_REQUEST);
    natsStatus s = natsSubscription_NextMsg(&msg, w->sub, timeout_ms);
    if (s == NATS_OK)
        s = natsMsg_GetMetaData(&md, msg);
    int r = s == NATS_OK ? 0 : kv_errmap(s, 0, why);
    if (r == 0 && (!msg || !md))
        r = -EIO; /* nats.c promises both with NATS_OK */
    if (r == 0) {
        const char *v = NULL, *subj = natsMsg_GetSubject(msg);
        rec->key = strlen(subj) > w->pre ? subj + w->pre : "";
        rec->op = KV_OP_PUT;
        if (natsMsgHeader_Get(msg, "KV-Operation", &v) == NATS_OK && v)
            rec->op = strcmp(v, "PURGE") == 0 ? KV_OP_PURGE : KV_OP_DEL;
        rec->rev = md->Sequence.Stream;
        rec->time_ns = md->Timestamp;
        rec->data = natsMsg_GetData(msg);
        rec->len = (size_t)natsMsg_GetDataLength(msg);
        v = NULL;
        if (!w->values && natsMsgHeader_Get(msg, "Nats-Msg-Size", &v) == NATS_OK && v) {
            rec->data = NULL;               /* headers only: the length is all we have */
            rec->len = strtoull(v, NULL, 10);
        }
        if (!w->done) {
            /* kvStore_Watch's rule: the first entry says how many follow it */
            if (w->received++ == 0)
                w->initial = md->NumPending;
            if (w->received > w->initial || md->NumPending == 0)
                w->marker_due = 1;
        }
        w->msg = msg;
        msg = NULL;
    }
    jsMsgMetaData_Destroy(md);
    natsMsg_Destroy(msg);
    guard_leave(&g);
    return r;
}

void walk_close(kv_walk *w)
{
    if (!w)
        return;
    kv_guard g;
    guard_enter(&g, GUARD_REQUEST);
    natsMsg_Destroy(w->msg);
    natsSubscription_Unsubscribe(w->sub); /* as kvWatcher_Stop: the consumer goes too */
    natsSubscription_Destroy(w->sub);
    guard_leave(&g);
    free(w);
}

int walk_once(kv_conn *c, const kv_bucket *b, const char *prefix, int values,
              int (*fn)(void *arg, const kv_rec *rec), void *arg, tombs *t, const char **why)
{
    kv_walk *w = NULL;
    int r = walk_open(c, b, prefix, values, &w);
    if (r < 0)
        return r;
    if (t && w->server_ns > 0)
        t->now_ns = w->server_ns; /* marker ages on the server's clock (tombs.c) */
    kv_rec e;
    for (;;) {
        int n = walk_next(w, kv_timeout_ms(), &e, why);
        if (n != 0) {
            r = n == 1 ? 0 : n;     /* 1: every key seen */
            break;
        }
        if (e.op != KV_OP_PUT) {
            if (t)
                tombs_see(t, &e);
        } else if ((r = fn(arg, &e)) != 0) {
            break;
        }
    }
    walk_close(w);
    return r;
}
