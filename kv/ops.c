/* ops.c: the operations on one key: bind, get, stat, commit, remove, version, and the publish
 * that every write goes through.
 *
 * Writes are published by us (js_Publish to "$KV.<bucket>.<key>"), not by kvStore_*, so
 * that every commit carries a unique Nats-Msg-Id and the server's answer carries a JetStream
 * error code: 10071 (wrong last sequence) is a conflict, 10054 a value over the bucket's
 * limit. Expectations: create-only is ExpectNoMessage (nats.c's ExpectLastSubjectSeq == 0
 * means "unset"); when that fails because the key's last message is a delete/purge
 * tombstone, the create is retried expecting the tombstone's sequence (what kvStore_Create
 * does). An update expects the remembered revision.
 *
 * Unknown outcomes (no reply: timeout, connection lost) are resolved, never guessed:
 *  1. the same message is sent again with the same id and expectations. The server's
 *     de-duplication runs before its expected-sequence check (verified on nats-server
 *     2.9.10), so if the first copy landed the answer is a duplicate ack carrying its
 *     sequence; if it did not, the resend is an ordinary attempt (applied, or a conflict).
 *     Only done while the stream's duplicate window is at least twice the request timeout.
 *     A conflict on the resend proves nothing: a restarted server rebuilds its duplicate
 *     window only from messages that still exist, so our landed copy, overwritten since by
 *     another writer, conflicts like an absent one; a stream leader elected meanwhile may
 *     not know the id yet (seen on a 3-node nats-server 2.9.10 cluster).
 *  2. if the resend gets no reply either, or any failure but "too large", the key's last
 *     stored message is read: it carries our Nats-Msg-Id header only if our write landed
 *     and was not overwritten since.
 *  Otherwise -ETIMEDOUT: a success is reported only for a write seen on the server, and a
 *  conflict never for a commit whose first copy may have landed.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "kv/internal.h"
#include "kv/keycodec.h"

#define SUBJ_MAX (KV_KEY_MAX + 300)

/* 1 when a segment of rel is longer than NAME_MAX: no directory listing could give such a
 * name back (struct dirent holds 255 bytes), and a local file system refuses it too. */
static int segment_too_long(const char *rel)
{
    size_t run = 0;
    for (const char *p = rel; *p; p++) {
        run = *p == '/' ? 0 : run + 1;
        if (run > NAME_MAX)
            return 1;
    }
    return 0;
}

int ops_key(const kv_mount *m, const char *rel, int marker, char *out, size_t outsz)
{
    if (segment_too_long(rel)) {
        log_at(LOG_WARN, "%.64s...: a name segment longer than %d bytes: refused, nothing "
               "sent", rel, NAME_MAX);
        return -ENAMETOOLONG;
    }
    int n = key_encode(m->prefix, rel, out, outsz);
    if (n >= 0 && marker) {
        if ((size_t)n + 1 > KV_KEY_MAX || (size_t)n + 2 > outsz)
            n = -ENAMETOOLONG;
        else {
            out[n++] = '/';
            out[n] = '\0';
        }
    }
    if (n < 0)
        log_at(LOG_WARN, "%.64s%s: key longer than %d bytes: refused, nothing sent", rel,
               strlen(rel) > 64 ? "..." : "", KV_KEY_MAX);
    return n < 0 ? n : 0;
}

int ops_open(const kv_mount *m, const char *key, kv_conn **c, const kv_bucket **b)
{
    int r = conn_acquire_for(c, key, m->bucket);
    if (r < 0)
        return r;
    r = conn_bucket(*c, m->bucket, b);
    if (r < 0)
        conn_release(*c);
    return r;
}

int ops_key_open(kv_mount *m, const char *rel, int marker, char *key, size_t keysz,
                 kv_conn **c, const kv_bucket **b)
{
    int r = ops_key(m, rel, marker, key, keysz);
    return r < 0 ? r : ops_open(m, key, c, b);
}

static int fail(const char *key, int r, const char *what, const char *why)
{
    enum log_level lvl = (r == -ENOENT || r == -EEXIST) ? LOG_INFO : LOG_WARN;
    log_at(lvl, "%s: %s failed: %s", key, what, why);
    return r;
}

/* The key's last stored message (deleted or not): its sequence, whether it is a tombstone,
 * whether it carries msgid. -ENOENT when the subject has no message. */
static int last_msg(kv_conn *c, const kv_bucket *b, const char *subj, const char *msgid,
                    uint64_t *seq, int *tombstone, int *ours)
{
    natsMsg *msg = NULL;
    jsErrCode jerr = 0;
    kv_guard g;
    guard_enter(&g, GUARD_REQUEST);
    natsStatus s = js_GetLastMsg(&msg, c->js, b->stream, subj, NULL, &jerr);
    int r = s == NATS_OK ? 0 : kv_errmap(s, jerr, NULL);
    if (r == 0) {
        const char *v = NULL;
        *seq = natsMsg_GetSequence(msg);
        *tombstone = natsMsgHeader_Get(msg, "KV-Operation", &v) == NATS_OK && v &&
                     (strcmp(v, "DEL") == 0 || strcmp(v, "PURGE") == 0);
        v = NULL;
        *ours = msgid && natsMsgHeader_Get(msg, "Nats-Msg-Id", &v) == NATS_OK && v &&
                strcmp(v, msgid) == 0;
    }
    natsMsg_Destroy(msg);
    guard_leave(&g);
    return r;
}

typedef struct pub_req {
    const char *subj;
    const void *data;
    size_t len;
    int del;
    char id[96];
    uint64_t expect;        /* 0 put, KV_REV_ABSENT create-only, else expected revision */
} pub_req;

/* One publish. Returns 0 (*seq set), a negative errno, or 1 for an unknown outcome. */
static int publish_once(kv_conn *c, const pub_req *q, uint64_t *seq, const char **why)
{
    natsMsg *msg = NULL;
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = q->id;
    po.MaxWait = kv_timeout_ms();
    if (q->expect == KV_REV_ABSENT)
        po.ExpectNoMessage = true;
    else if (q->expect)
        po.ExpectLastSubjectSeq = q->expect;
    kv_guard g;
    guard_enter(&g, GUARD_REQUEST);
    /* js_Publish sends from a message on its stack: no copy of the value, and no heap
     * message for nats.c's collector thread to free (a wake-up per commit). A delete needs
     * its header, so it builds one. */
    natsStatus s;
    if (!q->del) {
        s = js_Publish(&pa, c->js, q->subj, q->data, (int)q->len, &po, &jerr);
    } else {
        s = natsMsg_Create(&msg, q->subj, NULL, q->data, (int)q->len);
        if (s == NATS_OK)
            s = natsMsgHeader_Set(msg, "KV-Operation", "DEL");
        if (s == NATS_OK)
            s = js_PublishMsg(&pa, c->js, msg, &po, &jerr);
    }
    int r = 0;
    if (s == NATS_OK)
        *seq = pa->Sequence;
    else if (jerr == 0 && kv_outcome_unknown(s))
        r = 1;
    else
        r = kv_errmap(s, jerr, why);
    if (r == 1)
        kv_errmap(s, jerr, why);
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(msg);
    guard_leave(&g);
    return r;
}

/* Step 1 and 2 of the header comment, on a connection that may be a fresh one. */
static int resolve_unknown(const kv_bucket *b0, const pub_req *q, const char *key,
                           uint64_t *seq)
{
    kv_conn *c;
    const kv_bucket *b;
    int r = conn_acquire(&c, key);
    if (r < 0)
        return -ETIMEDOUT;
    if (conn_bucket(c, b0->name, &b) < 0) {
        conn_release(c);
        return -ETIMEDOUT;
    }
    const char *why = NULL;
    r = 1;
    /* b0's limits were read before the first copy was sent (ops_publish); b may be a fresh
     * binding on a new connection, whose limits are not read yet. */
    if (b0->dup_window_ns >= 2 * kv_timeout_ms() * 1000000)
        r = publish_once(c, q, seq, &why);
    /* The one definite answer to the resend: a value too large. A conflict proves nothing:
     * the server that would have recognised our message id may have restarted since (its
     * duplicate window is rebuilt only from messages that still exist) and another writer
     * may have written over our first copy. Only step 2 finding our id proves it landed. */
    int definite = r == -EFBIG;
    if (r == 1 || (r < 0 && !definite)) {
        uint64_t last = 0;
        int tomb = 0, ours = 0;
        if (last_msg(c, b, q->subj, q->id, &last, &tomb, &ours) == 0 && ours) {
            *seq = last;
            r = 0;
        } else {
            r = -ETIMEDOUT;
        }
    }
    conn_release(c);
    log_at(r == 0 ? LOG_INFO : LOG_WARN, "%s: commit reply lost: %s", key,
           r == 0 ? "the write is on the server" : r == -ETIMEDOUT ? "outcome unknown"
                                                 : "the write did not land");
    return r;
}

/* nats-server 2.9.10's file store keeps no message whose record (22 bytes of header, the
 * subject, the headers, the payload, an 8-byte hash) passes 32 MiB, yet acknowledges it:
 * the stream's last sequence stays where it was and a later get finds nothing (measured
 * with max_payload raised: a 33,554,372-byte value under an 18-byte subject is stored,
 * 33,554,392 is not). Such a commit is refused with -EFBIG before it is sent. */
#define JS_RECORD_MAX (32u * 1024 * 1024)
#define JS_RECORD_OVERHEAD 30

/* The largest value a commit under a subject of subj_len bytes can carry, once b's limits
 * are read: the one rule for ops_publish and ops_limit. */
static uint64_t value_max(const kv_conn *c, const kv_bucket *b, size_t subj_len)
{
    uint64_t max = INT_MAX; /* nats.c takes an int */
    if (b->max_value >= 0 && (uint64_t)b->max_value < max)
        max = (uint64_t)b->max_value;
    if (c->max_payload > 256 && (uint64_t)(c->max_payload - 256 /* our headers */) < max)
        max = (uint64_t)(c->max_payload - 256);
    uint64_t rec = subj_len + 256 + JS_RECORD_OVERHEAD;
    rec = rec < JS_RECORD_MAX ? JS_RECORD_MAX - rec : 0;
    return rec < max ? rec : max;
}

int ops_publish(kv_conn *c, const kv_bucket *b, const char *key, const void *data,
                size_t len, uint64_t expect, int del, uint64_t *rev)
{
    char subj[SUBJ_MAX];
    if (snprintf(subj, sizeof subj, "$KV.%s.%s", b->name, key) >= (int)sizeof subj)
        return -ENAMETOOLONG;
    int limits = conn_bucket_limits(c, b);
    if (limits < 0)
        return fail(key, limits, del ? "delete" : "commit", "the bucket's limits are unknown");
    if (len > value_max(c, b, strlen(subj)))
        return fail(key, -EFBIG, "commit", "value larger than the bucket or server allows");
    if (bucket_known_gone(b) && bucket_gone(c, b) == 1)
        return fail(key, -EIO, del ? "delete" : "commit", "the bucket has been deleted");
    pub_req q = { .subj = subj, .data = data, .len = len, .del = del, .expect = expect };
    const char *why = NULL;
    for (int attempt = 0; attempt < 4; attempt++) {
        conn_msgid(q.id, sizeof q.id);
        uint64_t seq = 0;
        int r = publish_once(c, &q, &seq, &why);
        if (r == -ECONNREFUSED && bucket_gone(c, b) == 1) { /* no responders: no stream */
            r = -EIO;
            why = "the bucket has been deleted";
        }
        if (r == 1)
            r = resolve_unknown(b, &q, key, &seq);
        if (r == 0) {
            *rev = seq;
            return 0;
        }
        if (r != -EEXIST || q.expect != KV_REV_ABSENT)
            return fail(key, r, del ? "delete" : "commit", why ? why : "outcome unknown");
        /* Create-only found a message: creatable only if it is a tombstone. */
        uint64_t last = 0;
        int tomb = 0, ours = 0;
        int lr = last_msg(c, b, subj, NULL, &last, &tomb, &ours);
        if (lr == -ENOENT)
            continue;       /* purged meanwhile: try the plain create again */
        if (lr < 0)
            return fail(key, lr, "create", "cannot read the key's last entry");
        if (!tomb)
            return fail(key, -EEXIST, "create", "the key exists");
        q.expect = last;
        r = publish_once(c, &q, &seq, &why);
        if (r == 1)
            r = resolve_unknown(b, &q, key, &seq);
        if (r == 0) {
            *rev = seq;
            return 0;
        }
        if (r != -EEXIST)
            return fail(key, r, "create", why ? why : "outcome unknown");
        q.expect = KV_REV_ABSENT;  /* the tombstone moved on: look again */
    }
    return fail(key, -EEXIST, "create", "the key keeps changing");
}

/* ---- the table's operations ---- */

/* What open checks before anything is read: the key, the connection, the bucket. Sends
 * nothing once connected and bound (conn_acquire and conn_bucket then only look). */
int ops_bind(kv_mount *m, const char *rel)
{
    char key[KV_KEY_MAX + 2];
    kv_conn *c;
    const kv_bucket *b;
    int r = ops_key_open(m, rel, 0, key, sizeof key, &c, &b);
    if (r == 0)
        conn_release(c);
    return r;
}

int ops_limit(kv_mount *m, const char *rel, uint64_t *max)
{
    char key[KV_KEY_MAX + 2];
    kv_conn *c;
    const kv_bucket *b;
    int r = ops_key_open(m, rel, 0, key, sizeof key, &c, &b);
    if (r < 0)
        return r;
    r = conn_bucket_limits(c, b);
    if (r == 0)
        *max = value_max(c, b, strlen("$KV.") + strlen(b->name) + 1 + strlen(key));
    conn_release(c);
    return r;
}

int ops_get(kv_mount *m, const char *rel, kv_value *out)
{
    char key[KV_KEY_MAX + 2];
    int r = ops_key(m, rel, 0, key, sizeof key);
    if (r == 0 && *rel && (m->flags & (KV_MOUNT_WATCH | KV_MOUNT_META))) {
        /* The read cache (cache.c): served only when caught up on this connection. */
        r = cache_get(m, key, out);
        if (r == 0 || r == -ENOENT) {
            revmem_read(m, key, r == 0 ? out->rev : KV_REV_ABSENT);
            return r;
        }
        r = 0;
    }
    kv_conn *c;
    const kv_bucket *b;
    if (r < 0 || (r = ops_open(m, key, &c, &b)) < 0)
        return r;
    cache_start(m);
    r = lane_get(c, b, key, out);
    if (r == 0) {
        revmem_read(m, key, out->rev);
    } else if (r == -ENOENT) {
        revmem_read(m, key, KV_REV_ABSENT);
        log_at(LOG_DEBUG, "%s: get: no such key", key);
    }
    conn_release(c);
    return r;
}

int ops_entry_stat(kv_conn *c, const kv_mount *m, const kv_bucket *b, const char *key,
                   int is_dir, kv_stat *out)
{
    int r = cache_stat(m, key, out);
    if (r <= 0)
        return r;
    kv_value v;
    if ((r = lane_get(c, b, key, &v)) < 0)
        return r;
    out->is_dir = is_dir;
    out->size = is_dir ? 0 : v.len;
    out->rev = v.rev;
    out->mtime_ns = v.mtime_ns;
    lane_release(&v);
    return 0;
}

/* stat on an open connection; also used by dirs.c. */
int ops_stat_on(kv_conn *c, const kv_bucket *b, const kv_mount *m, const char *rel,
                kv_stat *out)
{
    memset(out, 0, sizeof *out);
    if (!*rel) {
        out->is_dir = 1;
        return 0;
    }
    /* A directory is its marker (SPEC "Paths and keys"): two Gets at most, never a scan.
     * The marker is asked first when this process knows it (one Get for a directory it has
     * seen: makedirs and os.walk stat the same directories again and again); a value and a
     * marker of one name at once is not a state this project writes, and either answer is
     * then one of the two truths. */
    char key[KV_KEY_MAX + 2], marker[KV_KEY_MAX + 2];
    int r = ops_key(m, rel, 1, marker, sizeof marker);
    if (r < 0)
        return r;
    if (dirs_known(m, marker)) {
        if ((r = ops_entry_stat(c, m, b, marker, 1, out)) != -ENOENT)
            return r;
        dirs_note(m, marker, 0); /* removed since: ask for a value */
        if ((r = ops_key(m, rel, 0, key, sizeof key)) < 0)
            return r;
        return ops_entry_stat(c, m, b, key, 0, out);
    }
    if ((r = ops_key(m, rel, 0, key, sizeof key)) < 0)
        return r;
    if ((r = ops_entry_stat(c, m, b, key, 0, out)) != -ENOENT)
        return r;                       /* a value, or a failure */
    r = ops_entry_stat(c, m, b, marker, 1, out);
    if (r == 0)
        dirs_note(m, marker, 1);
    return r;
}

int ops_stat(kv_mount *m, const char *rel, kv_stat *out)
{
    if (!*rel) {
        memset(out, 0, sizeof *out);
        out->is_dir = 1;
        return 0;
    }
    char key[KV_KEY_MAX + 2];
    kv_conn *c;
    const kv_bucket *b;
    int r = ops_key_open(m, rel, 0, key, sizeof key, &c, &b);
    if (r < 0)
        return r;
    cache_start(m);
    r = ops_stat_on(c, b, m, rel, out);
    conn_release(c);
    return r;
}

int ops_isdir(kv_mount *m, const char *rel)
{
    if (!*rel)
        return 1;
    char marker[KV_KEY_MAX + 2];
    kv_conn *c;
    const kv_bucket *b;
    int r = ops_key_open(m, rel, 1, marker, sizeof marker, &c, &b);
    if (r < 0)
        return r;
    cache_start(m);
    kv_stat st;
    r = ops_entry_stat(c, m, b, marker, 1, &st);
    conn_release(c);
    if (r == 0 || r == -ENOENT)
        dirs_note(m, marker, r == 0);
    return r == 0 ? 1 : r == -ENOENT ? 0 : r;
}

int ops_commit(kv_mount *m, const char *rel, const void *data, size_t len, unsigned flags,
               uint64_t *rev_out)
{
    char key[KV_KEY_MAX + 2];
    kv_conn *c;
    const kv_bucket *b;
    int r = ops_key(m, rel, 0, key, sizeof key);
    if (r < 0)
        return r;
    uint64_t expect = 0;
    if (flags & KV_COMMIT_EXCL)
        expect = KV_REV_ABSENT;
    else if ((flags & KV_COMMIT_EXPECT) && rev_out)
        expect = *rev_out;
    else if ((r = revmem_recall(m, key, &expect)) == -ESTALE) {
        /* What this commit should expect was evicted (kv/revmem.c): a conflict, not a
         * blind put. The next commit without a read is a put; a read guards it again. */
        revmem_cleared(m, key);
        return fail(key, -EEXIST, "commit", "its revision memory was evicted: read again");
    } else if (r < 0)
        expect = 0;
    if ((r = ops_open(m, key, &c, &b)) < 0)
        return r;
    uint64_t rev = 0;
    r = ops_publish(c, b, key, data, len, expect, 0, &rev);
    conn_release(c);
    int own = (flags & (KV_COMMIT_EXCL | KV_COMMIT_EXPECT)) != 0; /* named its expectation */
    if (r == 0) {
        if (own)
            revmem_settled_own(m, key, expect, rev, 0);
        else
            revmem_settled(m, key, expect, rev);
        cache_note(m, key, data, len, rev, 0);
        if (rev_out)
            *rev_out = rev;
        /* a value of a directory's name (the sidecar, as an object store, writes both):
         * stat answers the value from now on, not the marker it knew */
        size_t kl = strlen(key);
        key[kl] = '/';
        key[kl + 1] = '\0';
        if (dirs_known(m, key))
            dirs_note(m, key, 0);
    } else if (r == -EEXIST) {
        if (own)
            revmem_settled_own(m, key, expect, 0, 0);
        else
            revmem_settled(m, key, expect, 0);
    } else if (own) {
        revmem_settled_own(m, key, expect, 0, 1);
    } else {
        revmem_unknown(m, key, expect); /* never a stale expectation later (a false EEXIST) */
    }
    return r;
}

int ops_remove(kv_mount *m, const char *rel)
{
    char key[KV_KEY_MAX + 2];
    kv_conn *c;
    const kv_bucket *b;
    int r = ops_key_open(m, rel, 0, key, sizeof key, &c, &b);
    if (r < 0)
        return r;
    /* Delete expecting the revision seen, so of two racing removes one gets -ENOENT. */
    for (int attempt = 0; attempt < 4; attempt++) {
        kv_value v;
        r = lane_get(c, b, key, &v);
        if (r < 0)
            break;
        uint64_t seen = v.rev, rev = 0;
        lane_release(&v);
        r = ops_publish(c, b, key, NULL, 0, seen, 1, &rev);
        if (r == 0)
            cache_note(m, key, NULL, 0, rev, 1);
        if (r != -EEXIST)
            break;
    }
    if (r == -ENOENT) {
        kv_stat st;
        if (ops_stat_on(c, b, m, rel, &st) == 0 && st.is_dir)
            r = -EISDIR;
        log_at(LOG_INFO, "%s: remove: %s", key, r == -EISDIR ? "a directory" : "no such key");
    }
    if (r == 0 || r == -ENOENT)
        revmem_removed(m, key);
    conn_release(c);
    return r;
}

int ops_version(kv_mount *m, const char *rel, uint64_t *rev)
{
    char key[KV_KEY_MAX + 2];
    kv_conn *c;
    const kv_bucket *b;
    int r = ops_key_open(m, rel, 0, key, sizeof key, &c, &b);
    if (r < 0)
        return r;
    kv_value v;
    r = lane_get(c, b, key, &v);
    if (r == 0) {
        *rev = v.rev;
        lane_release(&v);
    }
    conn_release(c);
    return r;
}
