/* bucket.c: `asya-state bucket add NAME [options]`, creating a JetStream KV bucket (Debian
 * ships no `nats` CLI). The one command that calls nats.c directly, because kv/ has no
 * operation for it: it connects through kv/'s own connection (conn_acquire, the same
 * environment as the shim) and calls js_CreateKeyValue inside kv/'s guard.
 */
#include "cli/cli.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "kv/internal.h"

struct bucket_opts {
    const char *name;
    int replicas;
    int64_t ttl_ns;
    int64_t max_value;  /* -1: no limit */
    int history;
    jsStorageType storage;
};

static void bucket_usage(FILE *out)
{
    fprintf(out,
            "usage: asya-state bucket add NAME [--replicas N] [--ttl DURATION]\n"
            "                                  [--max-value-size SIZE] [--history N]\n"
            "                                  [--storage file|memory]\n"
            "\n"
            "Creates the NATS JetStream KV bucket NAME on NATS_URL (with NATS_CREDS_FILE,\n"
            "NATS_NKEY_SEED_FILE, NATS_TLS_* as for the shim). An existing bucket with the\n"
            "same settings is accepted.\n"
            "\n"
            "  --replicas N          1..5 (default 1; 3 for high availability)\n"
            "  --ttl DURATION        age limit of a value: 90s, 30m, 24h, 7d (default none)\n"
            "  --max-value-size SIZE largest value: 1048576, 512KiB, 1MiB, 1MB (default none)\n"
            "  --history N           revisions kept per key, 1..64 (default 1)\n"
            "  --storage file|memory (default file)\n");
}

/* "24h", "90s", "7d", "1500ms", "0" -> ns. 0 or -EINVAL. */
static int bucket_duration(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0)
        return -EINVAL;
    double mul;
    if (!*end || strcmp(end, "s") == 0)
        mul = 1e9;
    else if (strcmp(end, "ms") == 0)
        mul = 1e6;
    else if (strcmp(end, "m") == 0)
        mul = 60e9;
    else if (strcmp(end, "h") == 0)
        mul = 3600e9;
    else if (strcmp(end, "d") == 0)
        mul = 86400e9;
    else
        return -EINVAL;
    if (v * mul > 9e18)
        return -EINVAL;
    *out = (int64_t)(v * mul);
    return 0;
}

/* "1MiB", "512KiB", "1MB", "1048576" -> bytes. 0 or -EINVAL. */
static int bucket_size(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || !isdigit((unsigned char)*s))
        return -EINVAL;
    static const struct { const char *sfx; unsigned long long mul; } units[] = {
        { "", 1 }, { "B", 1 }, { "K", 1000 }, { "KB", 1000 }, { "KiB", 1024 },
        { "M", 1000000 }, { "MB", 1000000 }, { "MiB", 1 << 20 },
        { "G", 1000000000 }, { "GB", 1000000000 }, { "GiB", 1 << 30 },
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(end, units[i].sfx) == 0 && (end[0] != 'b' || units[i].sfx[0] == 'B')) {
            if (v > INT32_MAX / units[i].mul) /* nats.c's MaxValueSize is an int32 */
                return -EINVAL;
            *out = (int64_t)(v * units[i].mul);
            return 0;
        }
    }
    return -EINVAL;
}

static int bucket_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -EINVAL;
    *out = (int)v;
    return 0;
}

/* CLI_OK, CLI_USAGE after a message; *help set for --help. */
static int bucket_args(int argc, char **argv, struct bucket_opts *o, int *help)
{
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *help = 1;
            return CLI_OK;
        } else if (a[0] != '-') {
            if (!o->name) {
                o->name = a;
                continue;
            }
            bad = 1; /* a second NAME: refused, not silently taking the last one */
        } else if (!v) {
            bad = 1;
        } else if (strcmp(a, "--replicas") == 0) {
            bad = bucket_int(v, 1, 5, &o->replicas) < 0;
        } else if (strcmp(a, "--history") == 0) {
            bad = bucket_int(v, 1, 64, &o->history) < 0;
        } else if (strcmp(a, "--ttl") == 0) {
            bad = bucket_duration(v, &o->ttl_ns) < 0;
        } else if (strcmp(a, "--max-value-size") == 0) {
            bad = bucket_size(v, &o->max_value) < 0;
        } else if (strcmp(a, "--storage") == 0) {
            if (strcmp(v, "file") == 0)
                o->storage = js_FileStorage;
            else if (strcmp(v, "memory") == 0)
                o->storage = js_MemoryStorage;
            else
                bad = 1;
        } else {
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "asya-state bucket: bad argument '%s%s%s'\n", a, v ? " " : "",
                    v && a[0] == '-' ? v : "");
            bucket_usage(stderr);
            return CLI_USAGE;
        }
        i++;
    }
    if (!o->name) {
        fprintf(stderr, "asya-state bucket add: NAME is required\n");
        bucket_usage(stderr);
        return CLI_USAGE;
    }
    for (const char *p = o->name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_') {
            fprintf(stderr, "asya-state bucket add: bad bucket name '%s' (letters, digits, "
                            "'-' and '_' only)\n", o->name);
            return CLI_USAGE;
        }
    return CLI_OK;
}

/* Creates the bucket. 0, or a negative errno after a message. */
static int bucket_create(const struct bucket_opts *o)
{
    const kv_ops *ops = kv_backend();
    int r = ops->init(KV_REVS_PER_PROCESS);
    if (r < 0)
        return r;
    kv_conn *c;
    r = conn_acquire(&c, o->name);
    if (r < 0)
        return r; /* logged, naming the cause */
    kvConfig cfg;
    kvConfig_Init(&cfg);
    cfg.Bucket = o->name;
    cfg.Replicas = o->replicas;
    cfg.History = (uint8_t)o->history;
    cfg.TTL = o->ttl_ns;
    cfg.MaxValueSize = o->max_value > 0 ? (int32_t)o->max_value : -1;
    cfg.StorageType = o->storage;
    kvStore *kv = NULL;
    kv_guard g;
    guard_enter(&g, GUARD_THREADS);
    natsStatus s = js_CreateKeyValue(&kv, c->js, &cfg);
    const char *why = NULL;
    const char *text = s == NATS_OK ? "" : nats_GetLastError(NULL);
    char msg[256];
    snprintf(msg, sizeof msg, "%s", text ? text : "");
    r = s == NATS_OK ? 0 : kv_errmap(s, 0, &why);
    kvStore_Destroy(kv);
    guard_leave(&g);
    conn_release(c);
    if (r < 0)
        fprintf(stderr, "asya-state bucket add: cannot create '%s': %s (%s)%s\n", o->name,
                why ? why : strerror(-r), msg,
                strstr(msg, "already in use") ? ": a bucket of that name exists with other "
                                                "settings" : "");
    return r;
}

int cmd_bucket(int argc, char **argv)
{
    struct bucket_opts o = { .replicas = 1, .max_value = -1, .history = 1,
                             .storage = js_FileStorage };
    int help = 0;
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        bucket_usage(stdout);
        return CLI_OK;
    }
    if (argc < 2 || strcmp(argv[1], "add") != 0) {
        fprintf(stderr, "asya-state bucket: expected `bucket add NAME`\n");
        bucket_usage(stderr);
        return CLI_USAGE;
    }
    int rc = bucket_args(argc, argv, &o, &help);
    if (rc != CLI_OK || help) {
        if (help)
            bucket_usage(stdout);
        return rc;
    }
    if (bucket_create(&o) < 0)
        return CLI_FAIL;
    printf("bucket %s: ready (replicas %d, history %d, storage %s", o.name, o.replicas,
           o.history, o.storage == js_MemoryStorage ? "memory" : "file");
    if (o.ttl_ns)
        printf(", ttl %" PRId64 "s", o.ttl_ns / 1000000000);
    if (o.max_value > 0)
        printf(", max value %" PRId64 " bytes", o.max_value);
    printf(")\n");
    return CLI_OK;
}
