/* edit.c: the commands that write: `asya-state put PATH [FILE|-]` (plain, --create,
 * --revision N), `rm [-d] [-f] PATH...` and `revert PATH REV`. Each write is one kv commit
 * with the contract's compare-and-set rules; a conflict is exit status 1.
 */
#include "cli/cli.h"
#include "cli/browse.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads all of fd into *buf (malloc'ed; caller frees). 0 or -errno. */
static int edit_slurp(int fd, char **buf, size_t *len)
{
    size_t cap = 65536, n = 0;
    char *b = malloc(cap);
    if (!b)
        return -ENOMEM;
    for (;;) {
        if (n == cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) {
                free(b);
                return -ENOMEM;
            }
            b = nb;
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(b);
            return -e;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *buf = b;
    *len = n;
    return 0;
}

/* Resolves one PATH for cmd with the mount table loaded into t. 0 or an exit status. */
static int edit_resolve(const char *cmd, struct mount_table *t, const char *path,
                        browse_path *bp, const kv_ops **ops)
{
    int r = browse_resolve(cmd, t, path, bp);
    if (r == 0 && (r = browse_ops(ops)) != 0)
        r = cli_fail(cmd, NULL, r);
    if (r == 0 && !*bp->rel) {
        cli_err(cmd, "%s: Is a directory (the mount's root)", path);
        r = CLI_FAIL;
    }
    return r;
}

/* Writes data at bp by flags (0, KV_COMMIT_EXCL or KV_COMMIT_EXPECT with *rev). */
static int edit_commit(const char *cmd, const kv_ops *ops, const browse_path *bp,
                       const char *arg, const void *data, size_t len, unsigned flags,
                       uint64_t *rev)
{
    kv_stat st;
    int r = ops->stat(bp->m, bp->rel, &st);
    if (r == 0 && st.is_dir)
        r = -EISDIR;
    else if (r == -ENOENT || r == 0)
        r = ops->mkparents(bp->m, bp->rel); /* as the sidecar's PUT: the directory appears */
    if (r == 0)
        r = ops->commit(bp->m, bp->rel, data, len, flags, rev);
    if (r == -EEXIST) {
        cli_flush_log(cmd);
        if (flags & KV_COMMIT_EXCL)
            cli_err(cmd, "%s: already exists (--create)", arg);
        else
            cli_err(cmd, "%s: revision conflict: it is no longer at the revision expected", arg);
        return CLI_FAIL;
    }
    return r < 0 ? cli_fail(cmd, arg, r) : CLI_OK;
}

static void put_usage(FILE *out)
{
    fprintf(out,
            "usage: asya-state put [--create | --revision N] [--] PATH [FILE|-]\n"
            "\n"
            "Writes the bytes of FILE (standard input when FILE is '-' or missing) as the\n"
            "whole value of PATH, and the markers of its missing directories.\n"
            "\n"
            "  -c, --create         only if PATH does not exist (else exit 1)\n"
            "  -r, --revision N     only if PATH is at revision N (else exit 1): the\n"
            "                       compare-and-set step of a read-modify-write\n"
            "  -h, --help           this help\n");
    cli_help_footer(out);
}

int cmd_put(int argc, char **argv)
{
    static const struct option lo[] = {
        { "create", no_argument, NULL, 'c' }, { "revision", required_argument, NULL, 'r' },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
    };
    unsigned flags = 0;
    uint64_t rev = 0;
    optind = 0;
    for (int c; (c = getopt_long(argc, argv, ":cr:h", lo, NULL)) != -1;) {
        int64_t v;
        if (c == 'c')
            flags |= KV_COMMIT_EXCL;
        else if (c == 'r') {
            if (cli_int(optarg, 1, INT64_MAX, &v) < 0)
                return cli_usage_error("put", "--revision wants a revision number (1 or "
                                              "more), not '%s'", optarg);
            flags |= KV_COMMIT_EXPECT;
            rev = (uint64_t)v;
        } else if (c == 'h') {
            put_usage(stdout);
            return CLI_OK;
        } else
            return cli_bad_option("put", c, argv);
    }
    if (flags == (KV_COMMIT_EXCL | KV_COMMIT_EXPECT))
        return cli_usage_error("put", "--create and --revision exclude each other");
    int n = argc - optind;
    if (n < 1 || n > 2)
        return cli_usage_error("put", n < 1 ? "PATH is required" : "too many arguments");
    const char *path = argv[optind], *file = n == 2 ? argv[optind + 1] : "-";
    int fd = STDIN_FILENO;
    if (strcmp(file, "-") != 0 && (fd = open(file, O_RDONLY | O_CLOEXEC)) < 0) {
        cli_err("put", "%s: %s", file, strerror(errno));
        return CLI_FAIL;
    }
    char *data = NULL;
    size_t len = 0;
    int r = edit_slurp(fd, &data, &len);
    if (fd != STDIN_FILENO)
        close(fd);
    if (r < 0) {
        cli_err("put", "%s: %s", strcmp(file, "-") ? file : "standard input", strerror(-r));
        return CLI_FAIL;
    }
    cli_hold_log();
    struct mount_table t = { 0 };
    browse_mounts_load(&t);
    browse_path bp;
    const kv_ops *ops;
    int rc = edit_resolve("put", &t, path, &bp, &ops);
    if (rc == 0)
        rc = edit_commit("put", ops, &bp, path, data, len, flags, &rev);
    free(data);
    mounts_free(&t);
    return rc;
}

static void rm_usage(FILE *out)
{
    fprintf(out,
            "usage: asya-state rm [-d] [-f] [--] PATH...\n"
            "\n"
            "Deletes each file PATH (a KV delete marker: the history keeps the old values).\n"
            "\n"
            "  -d, --dir     also remove empty directories (their marker keys)\n"
            "  -f, --force   a missing PATH is not an error\n"
            "  -h, --help    this help\n");
    cli_help_footer(out);
}

int cmd_rm(int argc, char **argv)
{
    static const struct option lo[] = {
        { "dir", no_argument, NULL, 'd' }, { "force", no_argument, NULL, 'f' },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
    };
    int dirs = 0, force = 0;
    optind = 0;
    for (int c; (c = getopt_long(argc, argv, ":dfh", lo, NULL)) != -1;) {
        if (c == 'd')
            dirs = 1;
        else if (c == 'f')
            force = 1;
        else if (c == 'h') {
            rm_usage(stdout);
            return CLI_OK;
        } else
            return cli_bad_option("rm", c, argv);
    }
    if (optind >= argc)
        return cli_usage_error("rm", "PATH is required");
    cli_hold_log();
    struct mount_table t = { 0 };
    browse_mounts_load(&t);
    int rc = CLI_OK;
    for (int i = optind; i < argc; i++) {
        browse_path bp;
        const kv_ops *ops;
        int s = edit_resolve("rm", &t, argv[i], &bp, &ops);
        if (s == 0) {
            kv_stat st;
            int r = ops->stat(bp.m, bp.rel, &st);
            if (r == 0 && st.is_dir)
                r = dirs ? ops->rmdir(bp.m, bp.rel) : -EISDIR;
            else if (r == 0)
                r = ops->remove(bp.m, bp.rel);
            if (r == -ENOENT && force)
                r = 0;
            if (r == -EISDIR && !dirs) {
                cli_err("rm", "%s: Is a directory (rm -d removes an empty one)", argv[i]);
                s = CLI_FAIL;
            } else if (r < 0) {
                s = cli_fail("rm", argv[i], r);
            }
        }
        if (s > rc)
            rc = s;
    }
    mounts_free(&t);
    return rc;
}

/* ---- revert ---- */

typedef struct revert_arg {
    uint64_t want, latest;
    int found, op;
    char *data;
    size_t len;
    int err;
} revert_arg;

static int revert_fn(void *arg, const kv_event *ev)
{
    revert_arg *a = arg;
    a->latest = ev->rev;
    if (ev->rev == a->want) {
        a->found = 1;
        a->op = ev->op;
        a->len = ev->len;
        a->data = malloc(ev->len ? ev->len : 1);
        if (!a->data)
            return -ENOMEM;
        if (ev->len)
            memcpy(a->data, ev->data, ev->len);
    }
    return 0;
}

static void revert_usage(FILE *out)
{
    fprintf(out,
            "usage: asya-state revert [--] PATH REV\n"
            "\n"
            "Writes the value PATH had at revision REV (see `asya-state history PATH`) as\n"
            "its new value, expecting PATH's latest revision (a change meanwhile is a\n"
            "conflict, exit 1). The bucket keeps as many revisions as its history setting.\n"
            "\n"
            "  -h, --help   this help\n");
    cli_help_footer(out);
}

int cmd_revert(int argc, char **argv)
{
    static const struct option lo[] = {
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
    };
    optind = 0;
    for (int c; (c = getopt_long(argc, argv, ":h", lo, NULL)) != -1;) {
        if (c == 'h') {
            revert_usage(stdout);
            return CLI_OK;
        }
        return cli_bad_option("revert", c, argv);
    }
    if (argc - optind != 2)
        return cli_usage_error("revert", "want PATH REV");
    const char *path = argv[optind];
    int64_t want;
    if (cli_int(argv[optind + 1], 1, INT64_MAX, &want) < 0)
        return cli_usage_error("revert", "REV must be a revision number, not '%s'",
                               argv[optind + 1]);
    cli_hold_log();
    struct mount_table t = { 0 };
    browse_mounts_load(&t);
    browse_path bp;
    const kv_ops *ops;
    revert_arg a = { .want = (uint64_t)want };
    int rc = edit_resolve("revert", &t, path, &bp, &ops);
    if (rc == 0) {
        int r = ops->history(bp.m, bp.rel, revert_fn, &a);
        if (r < 0)
            rc = cli_fail("revert", path, r);
        else if (!a.found) {
            cli_err("revert", "%s: revision %" PRId64 " is not in its history (see "
                              "`asya-state history %s`)", path, want, path);
            rc = CLI_FAIL;
        } else if (a.op != KV_OP_PUT) {
            cli_err("revert", "%s: revision %" PRId64 " is a delete (use rm)", path, want);
            rc = CLI_FAIL;
        } else {
            uint64_t rev = a.latest;
            rc = edit_commit("revert", ops, &bp, path, a.data, a.len, KV_COMMIT_EXPECT, &rev);
        }
    }
    free(a.data);
    mounts_free(&t);
    return rc;
}
