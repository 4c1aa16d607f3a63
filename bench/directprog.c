/* directprog.c: the floor: the same cycles as shimprog.c made with direct nats.c calls
 * (kvStore_Get / kvStore_Update, the revision kept as the shim keeps it), no preload.
 *
 *   directprog cycles URL BUCKET [C]     batches from stdin (see common.h) on key d<size>
 *                                        (C<size> if given: a second copy, the bench's A/A)
 *   directprog cycles-id URL BUCKET [C]  the same on key i<size>, each write published as the
 *                                        shim publishes it: js_Publish expecting the
 *                                        revision, with a unique Nats-Msg-Id header
 *   directprog first URL BUCKET KEY      connect + bind + Get; prints us since BENCH_T0_NS
 *   directprog puts URL BUCKET KEY       for each word read from stdin, prints the monotonic
 *                                        time in ns, then puts the word as KEY's value
 *   directprog jsonfill URL BUCKET FMT N SIZE   puts N JSON documents of SIZE bytes on keys
 *                                        FMT (one %d), {"id": i, "group": i % 100, "pad"}
 *   directprog scan URL BUCKET SUBJ      reads every value of the keys matching SUBJ (e.g.
 *                                        "sc.>") as the sidecar's /query does without the
 *                                        cache (an ordered consumer, deletes ignored, until
 *                                        the initial values are done); prints ms, docs, bytes
 *   directprog scale URL BUCKET PREFIX   batches from stdin (see common.h), the floors of the
 *                                        scale section: getmiss (a Get of a missing key), get
 *                                        (of the marker PREFIX.d/), create (kvStore_Create of a
 *                                        new marker), scan (the keys below PREFIX.d/: a
 *                                        headers-only watch of PREFIX.>, as a listing must) */
#include <errno.h>
#include <nats/nats.h>
#include <unistd.h>

#include "common.h"

static kvStore *kv;
static jsCtx *js_ctx;
static const char *bucket_name;
static int with_id;             /* cycles-id */
static char key_char = 'd';     /* the keys' first letter */
static char *buf;
static size_t bufcap;
static uint64_t revs[1 << 8];   /* last known revision per size slot */

static int slot(size_t size)
{
    return (int)(size % 251);
}

static int st_err(natsStatus s)
{
    if (s != NATS_OK)
        fprintf(stderr, "directprog: %s (%s)\n", natsStatus_GetText(s), nats_GetLastError(NULL));
    return s == NATS_OK ? 0 : -EIO;
}

static int get_into(const char *key, size_t *len, uint64_t *rev)
{
    kvEntry *e = NULL;
    natsStatus s = kvStore_Get(&e, kv, key);
    if (s != NATS_OK)
        return st_err(s);
    size_t n = (size_t)kvEntry_ValueLen(e);
    if (n > bufcap)
        n = bufcap;
    memcpy(buf, kvEntry_Value(e), n);
    *len = n;
    *rev = kvEntry_Revision(e);
    kvEntry_Destroy(e);
    return 0;
}

/* An update expecting *rev: kvStore_Update, or (cycles-id) the shim's publish. */
static int update(const char *key, size_t len, uint64_t *rev)
{
    if (!with_id)
        return st_err(kvStore_Update(rev, kv, key, buf, (int)len, *rev));
    static unsigned long n;
    char subj[128], id[64];
    snprintf(subj, sizeof subj, "$KV.%s.%s", bucket_name, key);
    snprintf(id, sizeof id, "bench-%d-%lu", (int)getpid(), ++n);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = id;
    po.ExpectLastSubjectSeq = *rev;
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_Publish(&pa, js_ctx, subj, buf, (int)len, &po, &jerr);
    if (s == NATS_OK)
        *rev = pa->Sequence;
    jsPubAck_Destroy(pa);
    return st_err(s);
}

static int cycle(const char *op, size_t size, unsigned iter)
{
    char key[64];
    size_t len;
    uint64_t *rev = &revs[slot(size)];
    snprintf(key, sizeof key, "%c%zu", key_char, size);
    if (size + 1 > bufcap) {
        free(buf);
        bufcap = size + 1;
        if (!(buf = malloc(bufcap)))
            return -ENOMEM;
    }
    if (strcmp(op, "init") == 0) {
        memset(buf, 'a', size);
        return st_err(kvStore_Put(rev, kv, key, buf, (int)size));
    }
    if (strcmp(op, "read") == 0)
        return get_into(key, &len, rev);
    if (strcmp(op, "write") == 0) {
        buf[0] = (char)('a' + iter % 26);
        return update(key, size, rev);
    }
    if (strcmp(op, "rmw") == 0) {
        int r = get_into(key, &len, rev);
        if (r < 0)
            return r;
        buf[0] = (char)('a' + iter % 26);
        return update(key, len, rev);
    }
    return -EINVAL;
}

/* The scale section's floors; size is unused. */
static const char *scale_prefix;

static int scale_scan(void)
{
    char filter[256], base[256];
    snprintf(filter, sizeof filter, "%s.>", scale_prefix);
    int blen = snprintf(base, sizeof base, "%s.d/", scale_prefix);
    kvWatchOptions o;
    kvWatchOptions_Init(&o);
    o.MetaOnly = true;
    kvWatcher *w = NULL;
    natsStatus s = kvStore_Watch(&w, kv, filter, &o);
    int below = 0;
    while (s == NATS_OK) {
        kvEntry *e = NULL;
        s = kvWatcher_Next(&e, w, 60000);
        if (s != NATS_OK || !e)
            break;
        below += strncmp(kvEntry_Key(e), base, (size_t)blen) == 0;
        kvEntry_Destroy(e);
    }
    kvWatcher_Destroy(w);
    return s == NATS_OK && below > 0 ? 0 : st_err(s == NATS_OK ? NATS_NOT_FOUND : s);
}

static int scale_op(const char *op, size_t size, unsigned iter)
{
    (void)size;
    char key[256];
    kvEntry *e = NULL;
    natsStatus s;
    if (strcmp(op, "getmiss") == 0 || strcmp(op, "get") == 0) {
        int miss = op[3] == 'm';
        if (miss)
            snprintf(key, sizeof key, "%s.nope%u", scale_prefix, iter);
        else
            snprintf(key, sizeof key, "%s.d/", scale_prefix);
        s = kvStore_Get(&e, kv, key);
        kvEntry_Destroy(e);
        return (s == NATS_NOT_FOUND) == miss ? 0 : st_err(s == NATS_OK ? NATS_ERR : s);
    }
    if (strcmp(op, "create") == 0) {
        snprintf(key, sizeof key, "%s.c%d-%u/", scale_prefix, (int)getpid(), iter);
        return st_err(kvStore_Create(NULL, kv, key, "", 0));
    }
    if (strcmp(op, "scan") == 0)
        return scale_scan();
    return -EINVAL;
}

/* wait_ms: the JetStream API's bound (0: nats.c's default, 5 s). */
static int bind(const char *url, const char *bucket, natsConnection **nc, jsCtx **js,
                int64_t wait_ms)
{
    jsOptions o;
    jsOptions_Init(&o);
    o.Wait = wait_ms;
    natsStatus s = natsConnection_ConnectTo(nc, url);
    if (s == NATS_OK)
        s = natsConnection_JetStream(js, *nc, &o);
    if (s == NATS_OK)
        s = js_KeyValue(&kv, *js, bucket);
    return st_err(s);
}

static int jsonfill(jsCtx *js, const char *bucket, const char *fmt, int n, int size)
{
    char *val = malloc((size_t)size + 64), key[512], subj[600];
    if (!val)
        return -ENOMEM;
    for (int i = 0; i < n; i++) {
        int h = snprintf(val, (size_t)size, "{\"id\": %d, \"group\": %d, \"pad\": \"", i,
                         i % 100);
        int pad = size - h - 2 > 0 ? size - h - 2 : 0;
        memset(val + h, 'x', (size_t)pad);
        memcpy(val + h + pad, "\"}", 2);
        snprintf(key, sizeof key, fmt, i);
        snprintf(subj, sizeof subj, "$KV.%s.%s", bucket, key);
        if (st_err(js_PublishAsync(js, subj, val, h + pad + 2, NULL)) < 0) {
            free(val);
            return -EIO;
        }
    }
    free(val);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 60000;
    return st_err(js_PublishAsyncComplete(js, &po));
}

static int scan(const char *subj)
{
    uint64_t t0 = bench_now_ns();
    kvWatchOptions o;
    kvWatchOptions_Init(&o);
    o.IgnoreDeletes = true;
    kvWatcher *w = NULL;
    if (st_err(kvStore_Watch(&w, kv, subj, &o)) < 0)
        return -EIO;
    long docs = 0;
    size_t bytes = 0;
    int rc = 0;
    for (;;) {
        kvEntry *e = NULL;
        natsStatus s = kvWatcher_Next(&e, w, 5000);
        if (s != NATS_OK) {
            rc = st_err(s);
            break;
        }
        if (!e)
            break; /* the initial values are done */
        docs++;
        bytes += (size_t)kvEntry_ValueLen(e);
        kvEntry_Destroy(e);
    }
    kvWatcher_Destroy(w);
    printf("%.2f %ld %zu\n", (double)(bench_now_ns() - t0) / 1e6, docs, bytes);
    return rc;
}

int main(int argc, char **argv)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    int rc = 2;
    if (argc >= 4 && (strcmp(argv[1], "cycles") == 0 || strcmp(argv[1], "cycles-id") == 0)) {
        with_id = strcmp(argv[1], "cycles-id") == 0;
        key_char = argc >= 5 ? argv[4][0] : with_id ? 'i' : 'd';
        bucket_name = argv[3];
        if (bind(argv[2], argv[3], &nc, &js, 0) < 0)
            return 1;
        js_ctx = js;
        rc = bench_serve(cycle);
    } else if (argc >= 5 && strcmp(argv[1], "first") == 0) {
        size_t len;
        uint64_t rev;
        bufcap = 65536;
        if (!(buf = malloc(bufcap)) || bind(argv[2], argv[3], &nc, &js, 0) < 0 ||
            get_into(argv[4], &len, &rev) < 0)
            return 1;
        printf("%.1f\n", bench_since_t0_us());
        rc = 0;
    } else if (argc >= 5 && strcmp(argv[1], "puts") == 0) {
        char word[32];
        if (bind(argv[2], argv[3], &nc, &js, 0) < 0)
            return 1;
        rc = 0;
        while (rc == 0 && scanf("%31s", word) == 1) {
            printf("%llu\n", (unsigned long long)bench_now_ns());
            fflush(stdout);
            rc = st_err(kvStore_PutString(NULL, kv, argv[4], word)) < 0;
        }
    } else if (argc >= 7 && strcmp(argv[1], "jsonfill") == 0) {
        if (bind(argv[2], argv[3], &nc, &js, 0) < 0)
            return 1;
        rc = jsonfill(js, argv[3], argv[4], atoi(argv[5]), atoi(argv[6])) < 0;
    } else if (argc >= 5 && strcmp(argv[1], "scan") == 0) {
        if (bind(argv[2], argv[3], &nc, &js, 0) < 0)
            return 1;
        rc = scan(argv[4]) < 0;
    } else if (argc >= 5 && strcmp(argv[1], "scale") == 0) {
        scale_prefix = argv[4];
        /* a scan of 100,000 keys on a busy server: the consumer's creation may take longer
         * than 5 s (the shim's side gets NATS_TIMEOUT_MS=30000 alike) */
        if (bind(argv[2], argv[3], &nc, &js, 30000) < 0)
            return 1;
        rc = bench_serve(scale_op);
    } else {
        fprintf(stderr, "usage: see the first comment of bench/directprog.c\n");
    }
    kvStore_Destroy(kv);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return rc;
}
