/* bucket.c: `asya-state bucket add NAME [options]`, creating a JetStream KV bucket (Debian
 * ships no `nats` CLI), and the dispatch of `bucket ls|info|edit|rm` (cli/bucket_admin.c).
 * Bucket administration is the one family that calls nats.c directly, because kv/ (the
 * shim's boundary) has no business creating or deleting buckets: it connects through
 * kv/'s own connection (conn_acquire, the same environment as the shim) and calls
 * js_CreateKeyValue inside kv/'s guard.
 */
#include "cli/cli.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/bucket.h"
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
            "       asya-state bucket ls [--json]\n"
            "       asya-state bucket info [--json] NAME\n"
            "       asya-state bucket edit NAME [--history N] [--ttl DURATION|none]\n"
            "                                   [--max-value-size SIZE|none]\n"
            "                                   [--max-bytes SIZE|none] [--json]\n"
            "       asya-state bucket rm NAME\n"
            "\n"
            "add creates the NATS JetStream KV bucket NAME on NATS_URL (an existing bucket\n"
            "with the same settings is accepted); ls lists the buckets; info shows one\n"
            "bucket's settings and size; edit changes an existing bucket's history, ttl,\n"
            "max value size or max bytes, keeping its values; rm deletes a bucket and\n"
            "every value in it.\n"
            "\n"
            "  --replicas N          1..5 (default 1; 3 for high availability)\n"
            "  --ttl DURATION        age limit of a value, Go-style: 90s, 1h30m, 0.5s, 7d\n"
            "                        (default none)\n"
            "  --max-value-size SIZE largest value: 1048576, 512KiB, 1MiB, 1MB (default none)\n"
            "  --history N           revisions kept per key, 1..64 (default 1)\n"
            "  --storage file|memory (default file)\n"
            "  --max-bytes SIZE      (edit) the bucket's total size limit, history included\n"
            "  --json                (ls, info, edit) JSON output\n"
            "  -h, --help            this help\n");
    cli_help_footer(out);
}

/* CLI_OK, or CLI_USAGE after a message; *help set for --help. */
static int bucket_args(int argc, char **argv, struct bucket_opts *o, int *help)
{
    static const struct option lo[] = {
        { "replicas", required_argument, NULL, 'R' },
        { "ttl", required_argument, NULL, 'T' },
        { "max-value-size", required_argument, NULL, 'M' },
        { "history", required_argument, NULL, 'H' },
        { "storage", required_argument, NULL, 'S' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    optind = 0;
    for (int c; (c = getopt_long(argc, argv, ":h", lo, NULL)) != -1;) {
        int64_t v = 0;
        switch (c) {
        case 'R':
            if (cli_int(optarg, 1, 5, &v) < 0)
                return cli_usage_error("bucket add", "--replicas wants 1..5, not '%s'", optarg);
            o->replicas = (int)v;
            break;
        case 'H':
            if (cli_int(optarg, 1, 64, &v) < 0)
                return cli_usage_error("bucket add", "--history wants 1..64, not '%s'", optarg);
            o->history = (int)v;
            break;
        case 'T':
            if (cli_duration(optarg, &o->ttl_ns) < 0)
                return cli_usage_error("bucket add", "--ttl: '%s' is not a duration (e.g. "
                                       "90s, 1h30m, 0.5s, 7d)", optarg);
            break;
        case 'M':
            if (cli_size(optarg, &o->max_value) < 0)
                return cli_usage_error("bucket add", "--max-value-size: '%s' is not a size "
                                       "(e.g. 1048576, 512KiB, 1MiB)", optarg);
            break;
        case 'S':
            if (strcmp(optarg, "file") == 0)
                o->storage = js_FileStorage;
            else if (strcmp(optarg, "memory") == 0)
                o->storage = js_MemoryStorage;
            else
                return cli_usage_error("bucket add", "--storage wants file or memory, not "
                                       "'%s'", optarg);
            break;
        case 'h':
            *help = 1;
            return CLI_OK;
        default:
            return cli_bad_option("bucket add", c, argv);
        }
    }
    if (argc - optind != 1)
        return cli_usage_error("bucket add", argc == optind ? "NAME is required"
                                                            : "one NAME only");
    o->name = argv[optind];
    if (!bucket_name_ok(o->name))
        return cli_usage_error("bucket add", "bad bucket name '%s' (letters, digits, '-' and "
                               "'_' only)", o->name);
    return CLI_OK;
}

/* Creates the bucket. 0, or a negative errno after a message. */
static int bucket_create(const struct bucket_opts *o)
{
    kv_conn *c;
    int r = bucket_connect("bucket add", &c);
    if (r < 0)
        return r;
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
    if (r < 0 && strstr(msg, "different")) {
        cli_err("bucket add", "'%s' exists with other settings (see `asya-state bucket info "
                              "%s`)", o->name, o->name);
        return -EEXIST; /* exit 1: a conflict with what exists */
    }
    if (r < 0)
        cli_err("bucket add", "cannot create '%s': %s", o->name, bucket_why(why, msg));
    return r == -EEXIST || r == -ENOENT ? -EIO : r;
}

int cmd_bucket(int argc, char **argv)
{
    struct bucket_opts o = { .replicas = 1, .max_value = -1, .history = 1,
                             .storage = js_FileStorage };
    int help = 0;
    const char *sub = argc >= 2 ? argv[1] : "";
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        bucket_usage(stdout);
        return CLI_OK;
    }
    if (strcmp(sub, "ls") == 0)
        return bucket_ls(argc - 1, argv + 1);
    if (strcmp(sub, "info") == 0)
        return bucket_info(argc - 1, argv + 1);
    if (strcmp(sub, "rm") == 0)
        return bucket_rm(argc - 1, argv + 1);
    if (strcmp(sub, "edit") == 0)
        return bucket_edit(argc - 1, argv + 1);
    if (strcmp(sub, "add") != 0)
        return cli_usage_error("bucket", *sub ? "unknown subcommand '%s' (add, ls, info, edit, "
                                                "rm)"
                                              : "a subcommand is required (add, ls, info, edit, "
                                                "rm)%s",
                               sub);
    int rc = bucket_args(argc - 1, argv + 1, &o, &help);
    if (rc != CLI_OK || help) {
        if (help)
            bucket_usage(stdout);
        return rc;
    }
    int r = bucket_create(&o);
    if (r < 0)
        return cli_status(r);
    char ttl[48];
    cli_duration_str(o.ttl_ns, ttl, sizeof ttl);
    printf("bucket %s: ready (replicas %d, history %d, storage %s", o.name, o.replicas,
           o.history, o.storage == js_MemoryStorage ? "memory" : "file");
    if (o.ttl_ns)
        printf(", ttl %s", ttl);
    if (o.max_value > 0)
        printf(", max value %" PRId64 " bytes", o.max_value);
    printf(")\n");
    return CLI_OK;
}
