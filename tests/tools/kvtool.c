/* kvtool: an independent NATS JetStream KV client for the tests, written directly on nats.c.
 *
 * It deliberately shares no code with kv/: the integration tests use it to create buckets and
 * to look at what the shim really stored, so a bug in kv/ cannot hide itself.
 *
 *   kvtool [-s URL] [--wait] CMD ...      (URL defaults to $NATS_URL)
 *     bucket-add NAME [--replicas N] [--history N] [--max-value-size BYTES] [--max-bytes BYTES]
 *                     [--storage file|memory] [--direct 0|1]   (0: no direct gets, as older
 *                     clients made buckets)
 *     bucket-del NAME
 *     put BUCKET KEY VALUE        prints the new revision
 *     put-stdin BUCKET KEY        value read from stdin (binary safe); prints the revision
 *     create BUCKET KEY VALUE     create-only; prints the revision
 *     update BUCKET KEY VALUE REV update expecting REV; prints the new revision
 *     get BUCKET KEY              prints the raw value; exit 1 "not found" when missing
 *     rev BUCKET KEY              prints the revision
 *     time BUCKET KEY             prints the revision's time, ns since the epoch
 *     keys BUCKET                 one key per line, sorted (nothing for an empty bucket)
 *     del BUCKET KEY              deletes (tombstone)
 *     history BUCKET KEY          "REV OP VALUE" per line, oldest first
 *
 * Exit 0 on success, 1 on failure with exactly one line on stderr. --wait retries the
 * connection for up to 5 seconds (a server that is still starting).
 */
#include <errno.h>
#include <nats/nats.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int die(const char *fmt, ...)
{
    va_list ap;
    fputs("kvtool: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

/* One stderr line for a failed nats.c call, with the library's last error text if any. */
static int nats_die(const char *what, natsStatus s)
{
    const char *txt = nats_GetLastError(NULL);
    if (txt == NULL || *txt == '\0')
        txt = natsStatus_GetText(s);
    return die("%s: %s", what, txt);
}

static int parse_u64(const char *s, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int print_rev(uint64_t rev)
{
    printf("%llu\n", (unsigned long long)rev);
    return 0;
}

static int cmd_bucket_add(jsCtx *js, int argc, char **argv)
{
    if (argc < 1)
        return die("usage: bucket-add NAME [--replicas N] [--history N] "
                   "[--max-value-size BYTES] [--max-bytes BYTES] [--storage file|memory] "
                   "[--direct 0|1]");
    kvConfig cfg;
    kvConfig_Init(&cfg);
    cfg.Bucket = argv[0];
    cfg.History = 1;
    cfg.Replicas = 1;
    int direct = 1; /* what nats.c 3.4.1 creates; 0 turns the stream's direct gets off after */
    for (int i = 1; i < argc; i++) {
        unsigned long long v = 0;
        const char *opt = argv[i];
        if (i + 1 >= argc)
            return die("bucket-add: %s needs a value", opt);
        const char *val = argv[++i];
        if (strcmp(opt, "--storage") == 0) {
            if (strcmp(val, "file") == 0)
                cfg.StorageType = js_FileStorage;
            else if (strcmp(val, "memory") == 0)
                cfg.StorageType = js_MemoryStorage;
            else
                return die("bucket-add: --storage is file or memory, not '%s'", val);
            continue;
        }
        if (parse_u64(val, &v) != 0)
            return die("bucket-add: %s wants a number, not '%s'", opt, val);
        if (strcmp(opt, "--replicas") == 0)
            cfg.Replicas = (int)v;
        else if (strcmp(opt, "--history") == 0 && v >= 1 && v <= 64)
            cfg.History = (uint8_t)v;
        else if (strcmp(opt, "--max-value-size") == 0 && v <= INT32_MAX)
            cfg.MaxValueSize = (int32_t)v;
        else if (strcmp(opt, "--max-bytes") == 0)
            cfg.MaxBytes = v;
        else if (strcmp(opt, "--direct") == 0 && v <= 1)
            direct = (int)v;
        else
            return die("bucket-add: bad option %s %s", opt, val);
    }
    kvStore *kv = NULL;
    natsStatus s = js_CreateKeyValue(&kv, js, &cfg);
    if (s != NATS_OK)
        return nats_die("bucket-add", s);
    kvStore_Destroy(kv);
    if (!direct) { /* a bucket as older clients made them: gets through the stream's leader */
        char stream[300];
        snprintf(stream, sizeof stream, "KV_%s", cfg.Bucket);
        jsStreamInfo *si = NULL, *up = NULL;
        s = js_GetStreamInfo(&si, js, stream, NULL, NULL);
        if (s == NATS_OK) {
            si->Config->AllowDirect = false;
            s = js_UpdateStream(&up, js, si->Config, NULL, NULL);
        }
        int off = s == NATS_OK && up && !up->Config->AllowDirect;
        jsStreamInfo_Destroy(si);
        jsStreamInfo_Destroy(up);
        if (!off)
            return s != NATS_OK ? nats_die("bucket-add --direct 0", s)
                                : die("bucket-add: the server kept direct gets on");
    }
    return 0;
}

static int cmd_bucket_del(jsCtx *js, int argc, char **argv)
{
    if (argc != 1)
        return die("usage: bucket-del NAME");
    natsStatus s = js_DeleteKeyValue(js, argv[0]);
    return s == NATS_OK ? 0 : nats_die("bucket-del", s);
}

static int read_stdin(char **buf, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    if (b == NULL)
        return -1;
    for (;;) {
        if (n == cap) {
            char *nb = realloc(b, cap *= 2);
            if (nb == NULL) {
                free(b);
                return -1;
            }
            b = nb;
        }
        ssize_t r = read(0, b + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(b);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *buf = b;
    *len = n;
    return 0;
}

/* put, put-stdin, create, update: the write commands share one body. */
static int cmd_write(kvStore *kv, const char *cmd, int argc, char **argv)
{
    int is_stdin = strcmp(cmd, "put-stdin") == 0, is_update = strcmp(cmd, "update") == 0;
    int want = is_stdin ? 2 : is_update ? 4 : 3;
    if (argc != want - 1)
        return die("usage: %s BUCKET KEY%s", cmd,
                   is_stdin ? "" : is_update ? " VALUE REV" : " VALUE");
    const char *key = argv[0];
    char *data = argv[1];
    size_t len = 0;
    unsigned long long last = 0;
    if (is_stdin) {
        if (read_stdin(&data, &len) != 0)
            return die("put-stdin: cannot read stdin: %s", strerror(errno));
    } else {
        len = strlen(data);
    }
    if (is_update && parse_u64(argv[2], &last) != 0)
        return die("update: REV must be a number, not '%s'", argv[2]);
    uint64_t rev = 0;
    natsStatus s;
    if (strcmp(cmd, "create") == 0)
        s = kvStore_Create(&rev, kv, key, data, (int)len);
    else if (is_update)
        s = kvStore_Update(&rev, kv, key, data, (int)len, last);
    else
        s = kvStore_Put(&rev, kv, key, data, (int)len);
    if (is_stdin)
        free(data);
    if (s != NATS_OK)
        return nats_die(cmd, s);
    return print_rev(rev);
}

static int cmd_get(kvStore *kv, const char *cmd, int argc, char **argv)
{
    if (argc != 1)
        return die("usage: %s BUCKET KEY", cmd);
    kvEntry *e = NULL;
    natsStatus s = kvStore_Get(&e, kv, argv[0]);
    if (s == NATS_NOT_FOUND)
        return die("not found: %s", argv[0]);
    if (s != NATS_OK)
        return nats_die(cmd, s);
    if (strcmp(cmd, "rev") == 0) {
        print_rev(kvEntry_Revision(e));
    } else if (strcmp(cmd, "time") == 0) {
        printf("%lld\n", (long long)kvEntry_Created(e));
    } else {
        int len = kvEntry_ValueLen(e);
        if (len > 0)
            fwrite(kvEntry_Value(e), 1, (size_t)len, stdout);
    }
    kvEntry_Destroy(e);
    return 0;
}

static int cmd_keys(kvStore *kv, int argc)
{
    if (argc != 0)
        return die("usage: keys BUCKET");
    kvKeysList l = {0};
    natsStatus s = kvStore_Keys(&l, kv, NULL);
    if (s == NATS_NOT_FOUND) /* nats.c: an empty bucket has "no keys found" */
        return 0;
    if (s != NATS_OK)
        return nats_die("keys", s);
    qsort(l.Keys, (size_t)l.Count, sizeof(char *), cmp_str);
    for (int i = 0; i < l.Count; i++)
        printf("%s\n", l.Keys[i]);
    kvKeysList_Destroy(&l);
    return 0;
}

static int cmd_del(kvStore *kv, int argc, char **argv)
{
    if (argc != 1)
        return die("usage: del BUCKET KEY");
    natsStatus s = kvStore_Delete(kv, argv[0]);
    return s == NATS_OK ? 0 : nats_die("del", s);
}

/* fill BUCKET FORMAT N SIZE: puts N keys named by FORMAT (a printf pattern with one %d,
 * e.g. "p.users/u%d.json"), each SIZE bytes, asynchronously (a scale test's key space in
 * seconds). */
static int cmd_fill(jsCtx *js, const char *bucket, int argc, char **argv)
{
    if (argc != 3)
        return die("usage: fill BUCKET FORMAT N SIZE");
    int n = atoi(argv[1]), size = atoi(argv[2]);
    char *val = malloc((size_t)size + 1);
    if (!val)
        return die("out of memory");
    memset(val, 'v', (size_t)size);
    char subj[1200], key[1100];
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, argv[0], i);
        snprintf(subj, sizeof subj, "$KV.%s.%s", bucket, key);
        natsStatus s = js_PublishAsync(js, subj, val, size, NULL);
        if (s != NATS_OK) {
            free(val);
            return nats_die("fill", s);
        }
    }
    free(val);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 60000;
    natsStatus s = js_PublishAsyncComplete(js, &po);
    return s == NATS_OK ? 0 : nats_die("fill", s);
}

static int cmd_history(kvStore *kv, int argc, char **argv)
{
    if (argc != 1)
        return die("usage: history BUCKET KEY");
    kvEntryList l = {0};
    natsStatus s = kvStore_History(&l, kv, argv[0], NULL);
    if (s == NATS_NOT_FOUND)
        return die("not found: %s", argv[0]);
    if (s != NATS_OK)
        return nats_die("history", s);
    for (int i = 0; i < l.Count; i++) {
        kvEntry *e = l.Entries[i];
        kvOperation op = kvEntry_Operation(e);
        printf("%llu %s ", (unsigned long long)kvEntry_Revision(e),
               op == kvOp_Put ? "PUT" : op == kvOp_Delete ? "DEL" : "PURGE");
        fwrite(kvEntry_Value(e), 1, (size_t)kvEntry_ValueLen(e), stdout);
        putchar('\n');
    }
    kvEntryList_Destroy(&l);
    return 0;
}

static int connect_to(const char *url, int wait, natsConnection **nc)
{
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, url);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(o, 2000);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(o, 0);
    if (s != NATS_OK) {
        natsOptions_Destroy(o);
        return nats_die("options", s);
    }
    for (int tries = 0;; tries++) {
        s = natsConnection_Connect(nc, o);
        if (s == NATS_OK || !wait || tries >= 50)
            break;
        usleep(100 * 1000);
    }
    natsOptions_Destroy(o);
    return s == NATS_OK ? 0 : nats_die("connect", s);
}

static int usage(void)
{
    return die("usage: kvtool [-s URL] [--wait] bucket-add|bucket-del|put|put-stdin|create|fill|"
               "update|get|rev|keys|del|history ...");
}

int main(int argc, char **argv)
{
    const char *url = getenv("NATS_URL");
    int wait = 0, i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "-s") == 0 && i + 1 < argc)
            url = argv[++i];
        else if (strcmp(argv[i], "--wait") == 0)
            wait = 1;
        else
            return usage();
    }
    if (i >= argc)
        return usage();
    if (url == NULL || *url == '\0')
        return die("no server: pass -s URL or set NATS_URL");
    const char *cmd = argv[i++];
    int nargs = argc - i;
    char **args = argv + i;

    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    kvStore *kv = NULL;
    int rc = connect_to(url, wait, &nc);
    if (rc != 0)
        goto out;
    natsStatus s = natsConnection_JetStream(&js, nc, NULL);
    if (s != NATS_OK) {
        rc = nats_die("jetstream", s);
        goto out;
    }
    if (strcmp(cmd, "bucket-add") == 0) {
        rc = cmd_bucket_add(js, nargs, args);
        goto out;
    }
    if (strcmp(cmd, "bucket-del") == 0) {
        rc = cmd_bucket_del(js, nargs, args);
        goto out;
    }
    if (nargs < 1) {
        rc = usage();
        goto out;
    }
    s = js_KeyValue(&kv, js, args[0]);
    if (s != NATS_OK) {
        rc = nats_die(args[0], s);
        goto out;
    }
    nargs--;
    args++;
    if (strcmp(cmd, "put") == 0 || strcmp(cmd, "put-stdin") == 0 ||
        strcmp(cmd, "create") == 0 || strcmp(cmd, "update") == 0)
        rc = cmd_write(kv, cmd, nargs, args);
    else if (strcmp(cmd, "get") == 0 || strcmp(cmd, "rev") == 0 || strcmp(cmd, "time") == 0)
        rc = cmd_get(kv, cmd, nargs, args);
    else if (strcmp(cmd, "keys") == 0)
        rc = cmd_keys(kv, nargs);
    else if (strcmp(cmd, "del") == 0)
        rc = cmd_del(kv, nargs, args);
    else if (strcmp(cmd, "history") == 0)
        rc = cmd_history(kv, nargs, args);
    else if (strcmp(cmd, "fill") == 0)
        rc = cmd_fill(js, args[-1], nargs, args);
    else
        rc = usage();
out:
    if (fflush(stdout) != 0 && rc == 0)
        rc = die("stdout: %s", strerror(errno));
    kvStore_Destroy(kv);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    nats_Close();
    return rc;
}
