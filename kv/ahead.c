/* ahead.c: a Get sent ahead of another request, its answer read after that request's.
 *
 * mkdir must know that no value has the directory's name, and must create the marker: two
 * requests, which one after the other cost two round trips. Sent together they cost one:
 * the Get goes out first (a JetStream direct get, "$JS.API.DIRECT.GET.<stream>.<subject>",
 * the request kvStore_Get makes, its reply to a lane of ours: lane.c), the create follows
 * on the same connection, and the Get's answer, there by then, is read last.
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
    char subj[KV_KEY_MAX + 300];
    int n = snprintf(subj, sizeof subj, "$JS.API.DIRECT.GET.%s.$KV.%s.%s", b->stream, b->name,
                     key);
    if (n < 0 || (size_t)n >= sizeof subj)
        return 0;
    kv_guard g;
    guard_enter(&g, GUARD_REQUEST);
    a->sent = lane_send(c, subj, &a->q) == 0; /* else ahead_wait asks the plain way */
    guard_leave(&g);
    return 0;
}

/* The plain Get: 1 for a value, 0 for none, or a negative errno. */
static int plain(const kv_ahead *a)
{
    kv_value v;
    int r = lane_get(a->c, a->b, a->key, &v);
    if (r == 0)
        lane_release(&v);
    return r == 0 ? 1 : r == -ENOENT ? 0 : r;
}

int ahead_wait(kv_ahead *a)
{
    if (!a->sent)
        return plain(a);
    a->sent = 0;
    natsMsg *msg = NULL;
    kv_guard g;
    guard_enter(&g, GUARD_REQUEST);
    natsStatus s = lane_wait(a->c, &a->q, &msg);
    const char *why = NULL;
    int r = s == NATS_OK ? 0 : kv_errmap(s, 0, &why);
    if (r == 0)
        r = lane_direct_reply(msg, NULL, NULL, &why);
    natsMsg_Destroy(msg);
    guard_leave(&g);
    if (r == -EAGAIN)
        return plain(a);
    if (r < 0)
        log_at(LOG_WARN, "%s: get failed: %s", a->key, why ? why : strerror(-r));
    return r;
}

void ahead_drop(kv_ahead *a)
{
    if (!a->sent)
        return;
    a->sent = 0;
    lane_drop(a->c, &a->q);
}
