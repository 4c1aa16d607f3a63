/* history.c: `asya-state history [--json] PATH` (every revision the bucket keeps) and
 * `asya-state watch [--json] [--initial] [PATH]` (one line per change until interrupted),
 * through kv's history and watch operations. Paths are printed as the shim sees them.
 */
#include "cli/cli.h"
#include "cli/browse.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const char *const op_names[] = { "put", "delete", "purge" };

typedef struct hist_arg {
    int json, n;
    const browse_path *bp;
} hist_arg;

static int hist_fn(void *arg, const kv_event *ev)
{
    hist_arg *a = arg;
    char tm[40];
    cli_time_str(ev->mtime_ns, tm, sizeof tm);
    if (a->json)
        printf("%s\n  {\"revision\": %" PRIu64 ", \"time\": \"%s\", \"op\": \"%s\", "
               "\"size\": %zu}", a->n ? "," : "", ev->rev, tm, op_names[ev->op], ev->len);
    else
        printf("%8" PRIu64 " %-20s %-6s %zu\n", ev->rev, tm, op_names[ev->op], ev->len);
    a->n++;
    return 0;
}

static void history_usage(FILE *out)
{
    fprintf(out,
            "usage: asya-state history [--json] [--] PATH\n"
            "\n"
            "Prints every revision of PATH the bucket keeps (its history setting), oldest\n"
            "first: revision, time (UTC), operation (put, delete, purge), size.\n"
            "\n"
            "  --json       a JSON array of {revision, time, op, size}\n"
            "  -h, --help   this help\n");
    cli_help_footer(out);
}

int cmd_history(int argc, char **argv)
{
    static const struct option lo[] = {
        { "json", no_argument, NULL, 'j' }, { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    hist_arg a = { 0 };
    optind = 0;
    for (int c; (c = getopt_long(argc, argv, ":h", lo, NULL)) != -1;) {
        if (c == 'j')
            a.json = 1;
        else if (c == 'h') {
            history_usage(stdout);
            return CLI_OK;
        } else
            return cli_bad_option("history", c, argv);
    }
    if (argc - optind != 1)
        return cli_usage_error("history", argc == optind ? "PATH is required" : "one PATH only");
    const char *path = argv[optind];
    cli_hold_log();
    struct mount_table t = { 0 };
    browse_mounts_load(&t);
    browse_path bp;
    const kv_ops *ops;
    int rc = browse_resolve("history", &t, path, &bp);
    if (rc == 0 && (rc = browse_ops(&ops)) != 0)
        rc = cli_fail("history", NULL, rc);
    if (rc == 0) {
        a.bp = &bp;
        if (a.json)
            printf("[");
        int r = *bp.rel ? ops->history(bp.m, bp.rel, hist_fn, &a) : -EISDIR;
        if (r == -ENOENT) {
            kv_stat st;
            if (ops->stat(bp.m, bp.rel, &st) == 0 && st.is_dir)
                r = -EISDIR;
        }
        if (a.json)
            printf("%s]\n", a.n ? "\n" : "");
        if (r < 0)
            rc = cli_fail("history", path, r);
    }
    mounts_free(&t);
    return rc;
}

/* ---- watch ---- */

typedef struct watch_arg {
    int json;
    const browse_path *bp;
} watch_arg;

static int watch_fn(void *arg, const kv_event *ev)
{
    watch_arg *a = arg;
    char abs[PATH_MAX + 2], tm[40];
    browse_join(a->bp->mt, ev->rel, abs, sizeof abs - 1);
    if (ev->is_dir)
        strcat(abs, "/");
    cli_time_str(ev->mtime_ns, tm, sizeof tm);
    if (a->json) {
        printf("{\"op\": \"%s\", \"revision\": %" PRIu64 ", \"time\": \"%s\", \"path\": ",
               op_names[ev->op], ev->rev, tm);
        cli_json_str(stdout, abs);
        printf(", \"type\": \"%s\"%s}\n", ev->is_dir ? "dir" : "file",
               ev->initial ? ", \"initial\": true" : "");
    } else {
        printf("%-6s %8" PRIu64 " %-20s %s\n", op_names[ev->op], ev->rev, tm, abs);
    }
    /* one line per change, as it happens, also into a pipe; a closed pipe ends the watch */
    return fflush(stdout) == 0 ? 0 : -EPIPE;
}

static void watch_usage(FILE *out)
{
    fprintf(out,
            "usage: asya-state watch [--json] [--initial] [--] [PATH]\n"
            "\n"
            "Prints one line per change of PATH or anything below it (the whole mount\n"
            "without PATH) until interrupted: operation (put, delete, purge), revision,\n"
            "time (UTC), path (a directory's marker ends in '/'). Survives server restarts.\n"
            "\n"
            "  --initial    first one line per existing key (its latest revision)\n"
            "  --json       one JSON object per line: {op, revision, time, path, type}\n"
            "  -h, --help   this help\n");
    cli_help_footer(out);
}

int cmd_watch(int argc, char **argv)
{
    static const struct option lo[] = {
        { "json", no_argument, NULL, 'j' }, { "initial", no_argument, NULL, 'i' },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
    };
    watch_arg a = { 0 };
    unsigned flags = 0;
    optind = 0;
    for (int c; (c = getopt_long(argc, argv, ":h", lo, NULL)) != -1;) {
        if (c == 'j')
            a.json = 1;
        else if (c == 'i')
            flags |= KV_WATCH_INITIAL;
        else if (c == 'h') {
            watch_usage(stdout);
            return CLI_OK;
        } else
            return cli_bad_option("watch", c, argv);
    }
    if (argc - optind > 1)
        return cli_usage_error("watch", "one PATH only");
    const char *path = optind < argc ? argv[optind] : NULL;
    cli_hold_log();
    struct mount_table t = { 0 };
    browse_mounts_load(&t);
    browse_path bp;
    const kv_ops *ops;
    int rc = browse_resolve("watch", &t, path, &bp);
    if (rc == 0 && (rc = browse_ops(&ops)) != 0)
        rc = cli_fail("watch", NULL, rc);
    if (rc == 0) {
        a.bp = &bp;
        int r = ops->watch(bp.m, bp.rel, flags, watch_fn, &a);
        rc = r == -EPIPE ? CLI_OK : cli_fail("watch", path, r);
    }
    mounts_free(&t);
    return rc;
}
