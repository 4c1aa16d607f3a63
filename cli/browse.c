/* browse.c: `asya-state ls [-l] [--json] [PATH...]`, `cat PATH...`, `rev PATH` and
 * `key PATH...`: the state as the shim sees it, through kv/ (names decoded by kv's list),
 * with PATH resolved by the shim's own mount table (shim/mounts.c) and lexical
 * normalisation (shim/path.c). Owns the PATH resolution every data command shares.
 */
#include "cli/cli.h"
#include "cli/browse.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shim/path.h"

int browse_mounts_load(struct mount_table *t)
{
    struct mount_env env = {
        .proxy_mounts = getenv("ASYA_STATE_PROXY_MOUNTS"),
        .state_mount = getenv("STATE_MOUNT"),
        .bucket = getenv("NATS_KV_BUCKET"),
        .prefix = getenv("STATE_PREFIX"),
        .read_cache = getenv("STATE_READ_CACHE"),
    };
    return mounts_parse(&env, t);
}

int browse_ops(const kv_ops **out)
{
    static const kv_ops *ops;
    if (!ops) {
        const kv_ops *o = kv_backend();
        if (!o || o->abi != KV_ABI) {
            fprintf(stderr, "asya-state: the kv backend has the wrong ABI (rebuild)\n");
            return -EINVAL;
        }
        int r = o->init(KV_REVS_PER_PROCESS);
        if (r < 0)
            return r; /* init named the variable */
        ops = o;
    }
    *out = ops;
    return 0;
}

void browse_join(const struct mount *mt, const char *rel, char *out, size_t outsz)
{
    if (snprintf(out, outsz, "%s%s%s", mt->path, *rel ? "/" : "", rel) >= (int)outsz)
        out[outsz - 1] = '\0'; /* a path that long was refused by kv/ already */
}

int browse_resolve(const char *cmd, const struct mount_table *t, const char *path,
                   browse_path *out)
{
    out->mt = &t->m[0]; /* set on every path, whatever it returns */
    out->m = NULL;
    out->rel[0] = out->shown[0] = '\0';
    if (t->n == 0) {
        cli_flush_log(cmd);
        cli_err(cmd, "no mount configured: set STATE_MOUNT or ASYA_STATE_PROXY_MOUNTS");
        return CLI_ERROR;
    }
    char norm[PATH_MAX];
    const struct mount *mt = &t->m[0];
    const char *below = "";
    if (path && path[0] == '/') {
        if (path_normalize("/", path, norm, sizeof norm) < 0) {
            cli_err(cmd, "%s: not a usable path", path);
            return CLI_USAGE;
        }
        mt = mounts_find(t, norm, &below);
        if (!mt) {
            cli_err(cmd, "%s: under no mount (the mounts come from ASYA_STATE_PROXY_MOUNTS "
                         "or STATE_MOUNT; the first is %s)", path, t->m[0].path);
            return CLI_FAIL;
        }
    } else if (path && *path) {
        char abs[PATH_MAX];
        if (snprintf(abs, sizeof abs, "%s/%s", mt->path, path) >= (int)sizeof abs ||
            path_normalize("/", abs, norm, sizeof norm) < 0) {
            cli_err(cmd, "%s: not a usable path", path);
            return CLI_USAGE;
        }
        below = path_below(norm, mt->path, mt->pathlen);
        if (!below) {
            cli_err(cmd, "%s: leaves the mount %s", path, mt->path);
            return CLI_FAIL;
        }
    }
    if (mt->err) {
        /* mounts_parse's lines (held) say what is wrong and which variable to set */
        if (cli_flush_log(cmd) == 0)
            cli_err(cmd, "the mount %s is misconfigured: run `asya-state check`", mt->path);
        return CLI_ERROR;
    }
    if (strlen(below) >= sizeof out->rel)
        return cli_fail(cmd, path, -ENAMETOOLONG);
    out->mt = mt;
    strcpy(out->rel, below);
    browse_join(mt, below, out->shown, sizeof out->shown);
    const kv_ops *ops;
    int r = browse_ops(&ops);
    if (r == 0)
        r = ops->mount(mt->bucket, mt->prefix, 0, &out->m);
    if (r < 0)
        return cli_fail(cmd, NULL, r);
    cli_flush_log(cmd); /* warnings (unknown mount options...) are shown, once */
    return 0;
}

/* ---- ls ---- */

typedef struct ls_opts {
    int lng, json, nobj; /* nobj: JSON objects printed so far */
} ls_opts;

static void ls_usage(FILE *out)
{
    fprintf(out,
            "usage: asya-state ls [-l] [--json] [--] [PATH...]\n"
            "\n"
            "Lists one level of the state below each directory PATH (a directory ends in\n"
            "'/'), names decoded; a file PATH is printed as given, as ls does.\n"
            "\n"
            "  -l, --long   type, size, revision and time (UTC) of each entry\n"
            "  --json       a JSON array of {name, path, type, size, revision, time}\n"
            "  -h, --help   this help\n");
    cli_help_footer(out);
}

/* One entry: name as shown, abs its absolute path, st its stat (NULL: unknown). */
static void ls_print(ls_opts *o, const char *name, const char *abs, const kv_stat *st,
                     int is_dir)
{
    char tm[40] = "-";
    if (st && st->mtime_ns)
        cli_time_str(st->mtime_ns, tm, sizeof tm);
    if (o->json) {
        printf("%s\n  {\"name\": ", o->nobj++ ? "," : "");
        cli_json_str(stdout, name);
        printf(", \"path\": ");
        cli_json_str(stdout, abs);
        printf(", \"type\": \"%s\"", is_dir ? "dir" : "file");
        if (st)
            printf(", \"size\": %" PRIu64 ", \"revision\": %" PRIu64 ", \"time\": \"%s\"",
                   st->size, st->rev, tm);
        printf("}");
    } else if (o->lng) {
        char size[24] = "-", rev[24] = "-";
        if (st && !is_dir)
            snprintf(size, sizeof size, "%" PRIu64, st->size);
        if (st && st->rev)
            snprintf(rev, sizeof rev, "%" PRIu64, st->rev);
        printf("%c %10s %8s %-20s %s%s\n", is_dir ? 'd' : '-', size, rev, tm, name,
               is_dir ? "/" : "");
    } else {
        printf("%s%s\n", name, is_dir ? "/" : "");
    }
}

static int ls_one(const kv_ops *ops, ls_opts *o, const browse_path *bp, const char *arg,
                  int header)
{
    kv_stat st;
    int r = ops->stat(bp->m, bp->rel, &st);
    if (r < 0)
        return cli_fail("ls", arg ? arg : bp->shown, r);
    if (!st.is_dir) {
        ls_print(o, arg, bp->shown, &st, 0);
        return CLI_OK;
    }
    kv_list l = { 0 };
    r = ops->list(bp->m, bp->rel, &l);
    if (r < 0)
        return cli_fail("ls", arg ? arg : bp->shown, r);
    if (header && !o->json)
        printf("%s:\n", arg);
    for (size_t i = 0; i < l.n; i++) {
        char rel[PATH_MAX], abs[PATH_MAX];
        if (snprintf(rel, sizeof rel, "%s%s%s", bp->rel, *bp->rel ? "/" : "", l.v[i].name) >=
            (int)sizeof rel)
            continue; /* cannot be a key (over KV_KEY_MAX) */
        browse_join(bp->mt, rel, abs, sizeof abs);
        kv_stat cs;
        int have = (o->lng || o->json) && ops->stat(bp->m, rel, &cs) == 0;
        ls_print(o, l.v[i].name, abs, have ? &cs : NULL, l.v[i].is_dir);
    }
    ops->release_list(&l);
    return CLI_OK;
}

int cmd_ls(int argc, char **argv)
{
    static const struct option lo[] = {
        { "long", no_argument, NULL, 'l' }, { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
    };
    ls_opts o = { 0 };
    optind = 0;
    for (int c; (c = getopt_long(argc, argv, ":lh", lo, NULL)) != -1;) {
        if (c == 'l')
            o.lng = 1;
        else if (c == 'j')
            o.json = 1;
        else if (c == 'h') {
            ls_usage(stdout);
            return CLI_OK;
        } else
            return cli_bad_option("ls", c, argv);
    }
    cli_hold_log();
    struct mount_table t = { 0 };
    browse_mounts_load(&t);
    int rc = CLI_OK, nargs = argc - optind;
    if (o.json)
        printf("[");
    for (int i = optind; i < argc || (nargs == 0 && i == optind); i++) {
        const char *arg = nargs ? argv[i] : NULL;
        browse_path bp;
        const kv_ops *ops;
        int r = browse_resolve("ls", &t, arg, &bp);
        if (r == 0 && (r = browse_ops(&ops)) == 0) {
            if (nargs > 1 && i > optind && !o.json)
                printf("\n");
            r = ls_one(ops, &o, &bp, arg ? arg : bp.shown, nargs > 1);
        }
        if (r > rc)
            rc = r;
        if (nargs == 0)
            break;
    }
    if (o.json)
        printf("%s]\n", o.nobj ? "\n" : "");
    if (fflush(stdout) != 0 && rc == CLI_OK)
        rc = cli_fail("ls", "stdout", -errno);
    mounts_free(&t);
    return rc;
}

/* ---- cat, rev, key ---- */

static void path_usage(FILE *out, const char *cmd)
{
    if (strcmp(cmd, "cat") == 0)
        fprintf(out, "usage: asya-state cat [--] PATH...\n\nWrites the value of each PATH "
                     "to stdout.\n");
    else if (strcmp(cmd, "rev") == 0)
        fprintf(out, "usage: asya-state rev [--] PATH\n\nPrints the KV revision of PATH "
                     "(the user.asya.version attribute).\n");
    else
        fprintf(out, "usage: asya-state key [--] PATH...\n\nPrints the NATS KV key each PATH "
                     "is stored under (prefix, '.', the path escaped);\na PATH ending in '/' "
                     "gives its directory's marker key. Sends nothing.\n");
    fprintf(out, "\n  -h, --help   this help\n");
    cli_help_footer(out);
}

/* A value read failed with -ENOENT: a directory says so. */
static int path_enoent(const kv_ops *ops, const browse_path *bp)
{
    kv_stat st;
    if (!*bp->rel || (ops->stat(bp->m, bp->rel, &st) == 0 && st.is_dir))
        return -EISDIR;
    return -ENOENT;
}

static int path_one(const char *cmd, const kv_ops *ops, const browse_path *bp, const char *arg)
{
    int r;
    if (strcmp(cmd, "cat") == 0) {
        kv_value v = { 0 };
        r = *bp->rel ? ops->get(bp->m, bp->rel, &v) : -ENOENT;
        if (r == 0) {
            if (v.len && fwrite(v.data, 1, v.len, stdout) != v.len)
                r = -errno;
            ops->release_value(&v);
        }
    } else if (strcmp(cmd, "rev") == 0) {
        uint64_t rev = 0;
        r = *bp->rel ? ops->version(bp->m, bp->rel, &rev) : -ENOENT;
        if (r == 0)
            printf("%" PRIu64 "\n", rev);
    } else {
        char key[KV_KEY_MAX + 2];
        size_t n = strlen(arg);
        int marker = n > 0 && arg[n - 1] == '/';
        if (!*bp->rel) {
            cli_err(cmd, "%s: the mount's root has no key of its own (its keys start with "
                         "'%s%s')", arg, bp->mt->prefix ? bp->mt->prefix : "",
                    bp->mt->prefix ? "." : "");
            return CLI_FAIL;
        }
        r = ops->key(bp->m, bp->rel, marker, key, sizeof key);
        if (r == 0)
            printf("%s\n", key);
    }
    if (r == -ENOENT)
        r = path_enoent(ops, bp);
    return r < 0 ? cli_fail(cmd, arg, r) : CLI_OK;
}

static int path_main(int argc, char **argv)
{
    static const struct option lo[] = {
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
    };
    const char *cmd = argv[0];
    optind = 0;
    for (int c; (c = getopt_long(argc, argv, ":h", lo, NULL)) != -1;) {
        if (c == 'h') {
            path_usage(stdout, cmd);
            return CLI_OK;
        }
        return cli_bad_option(cmd, c, argv);
    }
    if (optind >= argc)
        return cli_usage_error(cmd, "PATH is required");
    if (strcmp(cmd, "rev") == 0 && argc - optind > 1)
        return cli_usage_error(cmd, "one PATH only");
    cli_hold_log();
    struct mount_table t = { 0 };
    browse_mounts_load(&t);
    int rc = CLI_OK;
    for (int i = optind; i < argc; i++) {
        browse_path bp;
        const kv_ops *ops;
        int r = browse_resolve(cmd, &t, argv[i], &bp);
        if (r == 0 && (r = browse_ops(&ops)) == 0)
            r = path_one(cmd, ops, &bp, argv[i]);
        if (r > rc)
            rc = r;
    }
    if (fflush(stdout) != 0 && rc == CLI_OK)
        rc = cli_fail(cmd, "stdout", -errno);
    mounts_free(&t);
    return rc;
}

int cmd_cat(int argc, char **argv) { return path_main(argc, argv); }
int cmd_rev(int argc, char **argv) { return path_main(argc, argv); }
int cmd_key(int argc, char **argv) { return path_main(argc, argv); }
