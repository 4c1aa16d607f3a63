/* ahead.c: a Get sent ahead of another request, its answer read after that request's.
 *
 * mkdir must know that no value has the directory's name, and must create the marker: two
 * requests, which one after the other cost two round trips. Sent together they cost one:
 * the Get goes out first (a JetStream direct get, "$JS.API.DIRECT.GET.<stream>.<subject>",
 * the request kvStore_Get makes, its reply to an inbox of our own), the create follows on
 * the same connection, and the Get's answer, there by then, is read last.
 *
 * Only on buckets that allow direct gets (every bucket nats.c 3.4.1 or the nats CLI
 * creates; read with the bucket's limits, kv_bucket.direct): elsewhere, and whenever the
 * ahead request cannot be sent, ahead_wait makes the plain Get itself. The answer is the
 * one kvStore_Get would give: a value, or none (missing, deleted or purged).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "kv/internal.h"

int ahead_send(kv_conn *c, const kv_bucket *b, const char *key, kv_ahead *a)
{
    *a = (kv_ahead){ .c = c, .b = b, .key = key };
    if (!__atomic_load_n(&b->limits_read, __ATOMIC_ACQUIRE) || !b->direct)
        return 0;
    char subj[KV_KEY_MAX + 300], inbox[80];
    int n = snprintf(subj, sizeof subj, "$JS.API.DIRECT.GET.%s.$KV.%s.%s", b->stream, b->name,
                     key);
    if (n < 0 || (size_t)n >= sizeof subj)
        return 0;
    kv_guard g;
    guard_enter(&g, GUARD_REQUEST); /* a synchronous subscription: no thread of nats.c */
    natsStatus s = conn_inbox(c, inbox, sizeof inbox) == 0 ? NATS_OK : NATS_ERR;
    if (s == NATS_OK) {
        s = natsConnection_SubscribeSync(&a->sub, c->nc, inbox);
    }
    if (s == NATS_OK)
        s = natsSubscription_AutoUnsubscribe(a->sub, 1);
    if (s == NATS_OK)
        s = natsConnection_PublishRequest(c->nc, subj, inbox, NULL, 0);
    if (s != NATS_OK) { /* ahead_wait asks the plain way */
        natsSubscription_Destroy(a->sub);
        a->sub = NULL;
    }
    guard_leave(&g);
    return 0;
}

/* The plain Get: 1 for a value, 0 for none, or a negative errno. */
static int plain(const kv_ahead *a)
{
    kvEntry *e = NULL;
    int r = ops_entry(a->b, a->key, &e);
    kvEntry_Destroy(e);
    return r == 0 ? 1 : r == -ENOENT ? 0 : r;
}

int ahead_wait(kv_ahead *a)
{
    if (!a->sub)
        return plain(a);
    natsMsg *msg = NULL;
    kv_guard g;
    guard_enter(&g, GUARD_REQUEST);
    natsStatus s = natsSubscription_NextMsg(&msg, a->sub, kv_timeout_ms());
    const char *why = NULL, *status = NULL, *op = NULL;
    int r = s == NATS_OK ? 0 : kv_errmap(s, 0, &why);
    if (r == 0 && natsMsg_GetDataLength(msg) == 0 &&
        natsMsgHeader_Get(msg, "Status", &status) == NATS_OK && status) {
        /* 404: no message; 503: nobody answers direct gets (ask the plain way); else the
         * server refused, with its reason in Description */
        r = strcmp(status, "404") == 0 ? 0 : strcmp(status, "503") == 0 ? -EAGAIN : -EIO;
        if (r == -EIO && natsMsgHeader_Get(msg, "Description", &why) != NATS_OK)
            why = status;
    } else if (r == 0) {
        r = !(natsMsgHeader_Get(msg, "KV-Operation", &op) == NATS_OK && op &&
              (strcmp(op, "DEL") == 0 || strcmp(op, "PURGE") == 0));
    }
    if (r == -EIO)
        log_at(LOG_WARN, "%s: get: %s", a->key, why ? why : "?");
    natsMsg_Destroy(msg);
    natsSubscription_Destroy(a->sub);
    a->sub = NULL;
    guard_leave(&g);
    if (r == -EAGAIN)
        return plain(a);
    if (r < 0 && r != -EIO)
        log_at(LOG_WARN, "%s: get: %s", a->key, why ? why : strerror(-r));
    return r;
}

void ahead_drop(kv_ahead *a)
{
    if (!a->sub)
        return;
    kv_guard g;
    guard_enter(&g, GUARD_REQUEST);
    natsSubscription_Destroy(a->sub);
    a->sub = NULL;
    guard_leave(&g);
}
