/* bucket_admin.c: `asya-state bucket ls [-l] [--json]`, `bucket info [--json] NAME`,
 * `bucket edit NAME [settings]` and `bucket rm NAME`, on nats.c's JetStream calls inside kv/'s guard (see cli/bucket.c for
 * why bucket administration calls nats.c directly), and the helpers both files share.
 * A KV bucket NAME is the JetStream stream KV_NAME.
 */
#include "cli/cli.h"
#include "cli/bucket.h"
#include "cli/browse.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bucket_connect(const char *cmd, kv_conn **out)
{
    cli_hold_log();
    const kv_ops *ops;
    int r = browse_ops(&ops);
    *out = NULL;
    if (r == 0)
        r = conn_acquire(out, "");
    if (r > 0 || (r == 0 && !*out))
        r = -EIO; /* never: conn_acquire gives 0 and a connection, or -errno */
    if (r < 0)
        cli_fail(cmd, NULL, r);
    return r;
}

int bucket_name_ok(const char *name)
{
    if (!*name)
        return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
            return 0;
    return 1;
}

const char *bucket_why(const char *why, const char *msg)
{
    static char buf[256];
    snprintf(buf, sizeof buf, "%s", msg && *msg ? msg : why ? why : "error");
    cli_strip_locations(buf);
    return buf;
}

/* The stream info of bucket name: 0 (destroy *si), -ENOENT when there is no such bucket,
 * else a negative errno after a message. */
static int bucket_stream(const char *cmd, kv_conn *c, const char *name, jsStreamInfo **si)
{
    char stream[300];
    snprintf(stream, sizeof stream, "KV_%s", name);
    jsErrCode jerr = 0;
    kv_guard g;
    guard_enter(&g, GUARD_THREADS);
    natsStatus s = js_GetStreamInfo(si, c->js, stream, NULL, &jerr);
    const char *why = NULL;
    const char *text = s == NATS_OK ? "" : nats_GetLastError(NULL);
    char msg[256];
    snprintf(msg, sizeof msg, "%s", text ? text : "");
    int r = s == NATS_OK ? 0 : kv_errmap(s, jerr, &why);
    guard_leave(&g);
    if (s == NATS_NOT_FOUND || jerr == 10059 || (r < 0 && strstr(msg, "not found")))
        return -ENOENT;
    if (r < 0)
        cli_err(cmd, "bucket '%s': %s", name, bucket_why(why, msg));
    return r == -ENOENT || r == -EEXIST ? -EIO : r;
}

/* One bucket's facts, as a line or a JSON object. */
static void bucket_print(const char *name, const jsStreamInfo *si, int json, int lng)
{
    const jsStreamConfig *cf = si->Config;
    char ttl[48];
    cli_duration_str(cf->MaxAge, ttl, sizeof ttl);
    const char *storage = cf->Storage == js_MemoryStorage ? "memory" : "file";
    if (json) {
        printf("{\"name\": ");
        cli_json_str(stdout, name);
        printf(", \"values\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"history\": %" PRId64
               ", \"ttl\": \"%s\", \"max_value_size\": %" PRId32 ", \"max_bytes\": %" PRId64
               ", \"storage\": \"%s\", \"replicas\": %" PRId64 "}",
               si->State.Msgs, si->State.Bytes, cf->MaxMsgsPerSubject, cf->MaxAge ? ttl : "0s",
               cf->MaxMsgSize, cf->MaxBytes > 0 ? cf->MaxBytes : -1, storage, cf->Replicas);
    } else if (lng) {
        printf("%-24s %8" PRIu64 " %12" PRIu64 " %4" PRId64 " %10s %s\n", name,
               si->State.Msgs, si->State.Bytes, cf->MaxMsgsPerSubject,
               cf->MaxAge ? ttl : "-", storage);
    } else {
        printf("bucket:          %s\nvalues:          %" PRIu64 " (history included)\n"
               "bytes:           %" PRIu64 "\nhistory:         %" PRId64 "\n"
               "ttl:             %s\nmax value size:  ",
               name, si->State.Msgs, si->State.Bytes, cf->MaxMsgsPerSubject,
               cf->MaxAge ? ttl : "none");
        if (cf->MaxMsgSize > 0)
            printf("%" PRId32 "\n", cf->MaxMsgSize);
        else
            printf("none\n");
        printf("max bytes:       ");
        if (cf->MaxBytes > 0)
            printf("%" PRId64 "\n", cf->MaxBytes);
        else
            printf("none\n");
        printf("storage:         %s\nreplicas:        %" PRId64 "\n", storage, cf->Replicas);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Options of ls/info: --json, -l; returns -1 to go on, else an exit status. */
static int admin_opts(const char *cmd, int argc, char **argv, int *json, int *lng)
{
    static const struct option lo[] = {
        { "json", no_argument, NULL, 'j' }, { "long", no_argument, NULL, 'l' },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
    };
    optind = 0;
    for (int c; (c = getopt_long(argc, argv, ":lh", lo, NULL)) != -1;) {
        if (c == 'j')
            *json = 1;
        else if (c == 'l' && lng)
            *lng = 1;
        else if (c == 'h') {
            printf("usage: asya-state %s\n\nSee `asya-state bucket --help`.\n",
                   lng ? "bucket ls [-l] [--json]" : strcmp(cmd, "bucket rm") == 0
                                                         ? "bucket rm NAME"
                                                         : "bucket info [--json] NAME");
            cli_help_footer(stdout);
            return CLI_OK;
        } else
            return cli_bad_option(cmd, c, argv);
    }
    return -1;
}

int bucket_ls(int argc, char **argv)
{
    int json = 0, lng = 0;
    int rc = admin_opts("bucket ls", argc, argv, &json, &lng);
    if (rc >= 0)
        return rc;
    if (optind < argc)
        return cli_usage_error("bucket ls", "unexpected argument '%s'", argv[optind]);
    kv_conn *c = NULL;
    int r = bucket_connect("bucket ls", &c);
    if (r < 0)
        return cli_status(r);
    jsStreamNamesList *l = NULL;
    jsErrCode jerr = 0;
    kv_guard g;
    guard_enter(&g, GUARD_THREADS);
    natsStatus s = js_StreamNames(&l, c->js, NULL, &jerr);
    const char *why = NULL;
    r = s == NATS_OK || s == NATS_NOT_FOUND ? 0 : kv_errmap(s, jerr, &why);
    guard_leave(&g);
    if (r < 0) {
        cli_err("bucket ls", "cannot list the streams: %s", bucket_why(why, NULL));
        conn_release(c);
        return cli_status(r == -ENOENT || r == -EEXIST ? -EIO : r);
    }
    int n = 0;
    char **names = l ? calloc((size_t)l->Count + 1, sizeof *names) : NULL;
    for (int i = 0; names && i < l->Count; i++)
        if (strncmp(l->List[i], "KV_", 3) == 0)
            names[n++] = l->List[i] + 3;
    if (n)
        qsort(names, (size_t)n, sizeof *names, cmp_str);
    if (json)
        printf("[");
    else if (lng)
        printf("%-24s %8s %12s %4s %10s %s\n", "NAME", "VALUES", "BYTES", "HIST", "TTL",
               "STORAGE");
    for (int i = 0; i < n; i++) {
        jsStreamInfo *si = NULL;
        if (!json && !lng) {
            printf("%s\n", names[i]);
            continue;
        }
        if (bucket_stream("bucket ls", c, names[i], &si) == 0) {
            if (json)
                printf("%s\n  ", i ? "," : "");
            bucket_print(names[i], si, json, lng);
            jsStreamInfo_Destroy(si);
        }
    }
    if (json)
        printf("%s]\n", n ? "\n" : "");
    free(names);
    if (l)
        jsStreamNamesList_Destroy(l);
    conn_release(c);
    return CLI_OK;
}

int bucket_info(int argc, char **argv)
{
    int json = 0;
    int rc = admin_opts("bucket info", argc, argv, &json, NULL);
    if (rc >= 0)
        return rc;
    if (argc - optind != 1)
        return cli_usage_error("bucket info", argc == optind ? "NAME is required"
                                                             : "one NAME only");
    const char *name = argv[optind];
    if (!bucket_name_ok(name))
        return cli_usage_error("bucket info", "bad bucket name '%s'", name);
    kv_conn *c = NULL;
    int r = bucket_connect("bucket info", &c);
    if (r < 0)
        return cli_status(r);
    jsStreamInfo *si = NULL;
    r = bucket_stream("bucket info", c, name, &si);
    if (r == 0) {
        bucket_print(name, si, json, 0);
        if (json)
            printf("\n");
        jsStreamInfo_Destroy(si);
    } else if (r == -ENOENT) {
        cli_err("bucket info", "no bucket '%s'", name);
    }
    conn_release(c);
    return cli_status(r);
}

int bucket_rm(int argc, char **argv)
{
    int json = 0;
    int rc = admin_opts("bucket rm", argc, argv, &json, NULL);
    if (rc >= 0)
        return rc;
    if (argc - optind != 1)
        return cli_usage_error("bucket rm", argc == optind ? "NAME is required"
                                                           : "one NAME only");
    const char *name = argv[optind];
    if (!bucket_name_ok(name))
        return cli_usage_error("bucket rm", "bad bucket name '%s'", name);
    kv_conn *c = NULL;
    int r = bucket_connect("bucket rm", &c);
    if (r < 0)
        return cli_status(r);
    jsStreamInfo *si = NULL;
    r = bucket_stream("bucket rm", c, name, &si); /* says "no bucket" rather than an error */
    if (r == 0) {
        jsStreamInfo_Destroy(si);
        kv_guard g;
        guard_enter(&g, GUARD_THREADS);
        natsStatus s = js_DeleteKeyValue(c->js, name);
        const char *why = NULL;
        const char *text = s == NATS_OK ? "" : nats_GetLastError(NULL);
        char msg[256];
        snprintf(msg, sizeof msg, "%s", text ? text : "");
        r = s == NATS_OK ? 0 : kv_errmap(s, 0, &why);
        guard_leave(&g);
        if (r < 0) {
            cli_err("bucket rm", "cannot delete '%s': %s", name, bucket_why(why, msg));
            r = r == -ENOENT || r == -EEXIST ? -EIO : r;
        }
    } else if (r == -ENOENT) {
        cli_err("bucket rm", "no bucket '%s'", name);
    }
    conn_release(c);
    return cli_status(r);
}

/* The settings `bucket edit` changes; a field left at its "unset" value keeps the bucket's. */
struct bucket_edits {
    int64_t history;    /* 0: unchanged */
    int64_t ttl_ns;     /* -1: unchanged; 0: none */
    int64_t max_value;  /* 0: unchanged; -1: none */
    int64_t max_bytes;  /* 0: unchanged; -1: none */
};

/* "none" (no limit) -> -1, else a size up to max, never 0 (0 means unchanged). */
static int edit_size(const char *opt, const char *arg, int64_t max, int64_t *out)
{
    if (strcmp(arg, "none") == 0) {
        *out = -1;
        return CLI_OK;
    }
    if (cli_size_max(arg, max, out) < 0 || *out == 0)
        return cli_usage_error("bucket edit", "%s: '%s' is not a size (e.g. 1048576, 512KiB, "
                               "1MiB) or none", opt, arg);
    return CLI_OK;
}

/* Options and NAME of `bucket edit`: CLI_OK, -1 after --help, else an exit status after a
 * message. */
static int edit_args(int argc, char **argv, struct bucket_edits *e, int *json)
{
    static const struct option lo[] = {
        { "history", required_argument, NULL, 'H' }, { "ttl", required_argument, NULL, 'T' },
        { "max-value-size", required_argument, NULL, 'M' },
        { "max-bytes", required_argument, NULL, 'B' }, { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
    };
    optind = 0;
    for (int c; (c = getopt_long(argc, argv, ":h", lo, NULL)) != -1;) {
        int rc = CLI_OK;
        switch (c) {
        case 'H':
            if (cli_int(optarg, 1, 64, &e->history) < 0)
                rc = cli_usage_error("bucket edit", "--history wants 1..64, not '%s'", optarg);
            break;
        case 'T':
            if (strcmp(optarg, "none") == 0)
                e->ttl_ns = 0;
            else if (cli_duration(optarg, &e->ttl_ns) < 0)
                rc = cli_usage_error("bucket edit", "--ttl: '%s' is not a duration (e.g. 90s, "
                                     "1h30m, 0.5s, 7d) or none", optarg);
            break;
        case 'M':
            rc = edit_size("--max-value-size", optarg, INT32_MAX, &e->max_value);
            break;
        case 'B':
            rc = edit_size("--max-bytes", optarg, INT64_MAX, &e->max_bytes);
            break;
        case 'j':
            *json = 1;
            break;
        case 'h':
            printf("usage: asya-state bucket edit NAME [--history N] [--ttl DURATION|none]\n"
                   "                                   [--max-value-size SIZE|none]\n"
                   "                                   [--max-bytes SIZE|none] [--json]\n\n"
                   "Changes settings of an existing bucket, keeping its values; prints the\n"
                   "settings it has then. See `asya-state bucket --help`.\n");
            cli_help_footer(stdout);
            return -1;
        default:
            rc = cli_bad_option("bucket edit", c, argv);
        }
        if (rc != CLI_OK)
            return rc;
    }
    if (argc - optind != 1)
        return cli_usage_error("bucket edit", argc == optind ? "NAME is required"
                                                             : "one NAME only");
    if (!bucket_name_ok(argv[optind]))
        return cli_usage_error("bucket edit", "bad bucket name '%s'", argv[optind]);
    if (!e->history && e->ttl_ns < 0 && !e->max_value && !e->max_bytes)
        return cli_usage_error("bucket edit", "nothing to change (--history, --ttl, "
                               "--max-value-size, --max-bytes)");
    return CLI_OK;
}

/* A KV bucket's duplicate window, as nats.c's js_CreateKeyValue sets it: 2 minutes, or the
 * TTL when that is shorter (the server refuses a window longer than the stream's max age). */
static int64_t edit_dupe_window(int64_t ttl_ns)
{
    const int64_t two_min = INT64_C(120000000000);
    return ttl_ns > 0 && ttl_ns < two_min ? ttl_ns : two_min;
}

int bucket_edit(int argc, char **argv)
{
    struct bucket_edits e = { .ttl_ns = -1 };
    int json = 0;
    int rc = edit_args(argc, argv, &e, &json);
    if (rc != CLI_OK)
        return rc < 0 ? CLI_OK : rc; /* -1: --help printed */
    const char *name = argv[optind];
    kv_conn *c = NULL;
    int r = bucket_connect("bucket edit", &c);
    if (r < 0)
        return cli_status(r);
    jsStreamInfo *si = NULL, *nsi = NULL;
    r = bucket_stream("bucket edit", c, name, &si);
    if (r == -ENOENT)
        cli_err("bucket edit", "no bucket '%s'", name);
    if (r == 0) {
        /* A copy of the bucket's stream configuration with the edits; its strings stay
         * si's, which lives until the update is answered. */
        jsStreamConfig cfg = *si->Config;
        if (e.history)
            cfg.MaxMsgsPerSubject = e.history;
        if (e.ttl_ns >= 0) {
            cfg.MaxAge = e.ttl_ns;
            cfg.Duplicates = edit_dupe_window(e.ttl_ns);
        }
        if (e.max_value)
            cfg.MaxMsgSize = e.max_value > 0 ? (int32_t)e.max_value : -1;
        if (e.max_bytes)
            cfg.MaxBytes = e.max_bytes;
        jsErrCode jerr = 0;
        kv_guard g;
        guard_enter(&g, GUARD_THREADS);
        natsStatus s = js_UpdateStream(&nsi, c->js, &cfg, NULL, &jerr);
        const char *why = NULL;
        const char *text = s == NATS_OK ? "" : nats_GetLastError(NULL);
        char msg[256];
        snprintf(msg, sizeof msg, "%s", text ? text : "");
        r = s == NATS_OK ? 0 : kv_errmap(s, jerr, &why);
        guard_leave(&g);
        jsStreamInfo_Destroy(si);
        if (r < 0) {
            cli_err("bucket edit", "the server refused the change to '%s': %s", name,
                    bucket_why(why, msg));
            r = -EIO; /* exit 3: the server's answer, not a missing key or a conflict */
        } else {
            bucket_print(name, nsi, json, 0);
            if (json)
                printf("\n");
        }
        jsStreamInfo_Destroy(nsi);
    }
    conn_release(c);
    return cli_status(r);
}
