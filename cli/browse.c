/* browse.c: `asya-state ls [PATH]`, `asya-state cat PATH` and `asya-state rev PATH`: the
 * state as the shim sees it, through kv/ (names decoded by kv's list), with PATH resolved by
 * the shim's own mount table (shim/mounts.c) and lexical normalisation (shim/path.c).
 */
#include "cli/cli.h"
#include "cli/browse.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
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

int browse_resolve(const struct mount_table *t, const char *path, kv_mount **m, char *rel,
                   size_t relsz)
{
    if (t->n == 0) {
        fprintf(stderr, "asya-state: no mount configured\n");
        return -ENOENT;
    }
    char norm[PATH_MAX];
    const struct mount *mt = &t->m[0];
    const char *below = "";
    if (path && path[0] == '/') {
        int n = path_normalize("/", path, norm, sizeof norm);
        if (n < 0) {
            fprintf(stderr, "asya-state: bad path '%s'\n", path);
            return n;
        }
        mt = mounts_find(t, norm, &below);
        if (!mt) {
            fprintf(stderr, "asya-state: %s is under no mount (mounts come from "
                            "ASYA_STATE_PROXY_MOUNTS or STATE_MOUNT; first is %s)\n",
                    path, t->m[0].path);
            return -ENOENT;
        }
    } else if (path && *path) {
        char abs[PATH_MAX];
        if (snprintf(abs, sizeof abs, "%s/%s", mt->path, path) >= (int)sizeof abs)
            return -ENAMETOOLONG;
        int n = path_normalize("/", abs, norm, sizeof norm);
        if (n < 0)
            return n;
        below = path_below(norm, mt->path, mt->pathlen);
        if (!below) {
            fprintf(stderr, "asya-state: %s leaves the mount %s\n", path, mt->path);
            return -ENOENT;
        }
    }
    if (mt->err) {
        fprintf(stderr, "asya-state: the mount %s is misconfigured (%s): run `asya-state "
                        "check`\n", mt->path, strerror(-mt->err));
        return mt->err;
    }
    if (!mt->bucket) {
        fprintf(stderr, "asya-state: no bucket for %s: set NATS_KV_BUCKET\n", mt->path);
        return -EINVAL;
    }
    if (strlen(below) >= relsz)
        return -ENAMETOOLONG;
    strcpy(rel, below);
    const kv_ops *ops;
    int r = browse_ops(&ops);
    if (r < 0)
        return r;
    r = ops->mount(mt->bucket, mt->prefix, 0, m);
    if (r < 0)
        fprintf(stderr, "asya-state: cannot use bucket %s: %s\n", mt->bucket, strerror(-r));
    return r;
}

static void browse_usage(FILE *out, const char *cmd)
{
    if (strcmp(cmd, "ls") == 0)
        fprintf(out, "usage: asya-state ls [PATH]\n\nLists one level of the state below PATH "
                     "(a directory ends in '/'), names decoded.\n");
    else if (strcmp(cmd, "cat") == 0)
        fprintf(out, "usage: asya-state cat PATH\n\nWrites the value of PATH to stdout.\n");
    else
        fprintf(out, "usage: asya-state rev PATH\n\nPrints the KV revision of PATH (the "
                     "user.asya.version attribute).\n");
    fprintf(out, "\nPATH is a path under a mount (/state/cache/x) or relative to the first "
                 "mount.\nenvironment: as for the shim (NATS_URL, NATS_KV_BUCKET, STATE_PREFIX,"
                 "\nASYA_STATE_PROXY_MOUNTS, STATE_MOUNT, NATS_CREDS_FILE, ...).\n");
}

/* One PATH command once resolved; returns the exit status. */
static int browse_do(const char *cmd, const kv_ops *ops, kv_mount *m, const char *rel,
                     const char *path)
{
    int r;
    const char *shown = path ? path : "(mount root)";
    if (strcmp(cmd, "ls") == 0) {
        kv_list l = { 0 };
        r = ops->list(m, rel, &l);
        if (r == 0) {
            for (size_t i = 0; i < l.n; i++)
                printf("%s%s\n", l.v[i].name, l.v[i].is_dir ? "/" : "");
            ops->release_list(&l);
        }
    } else if (strcmp(cmd, "cat") == 0) {
        kv_value v = { 0 };
        r = ops->get(m, rel, &v);
        if (r == 0) {
            if (v.len && fwrite(v.data, 1, v.len, stdout) != v.len)
                r = -EIO;
            ops->release_value(&v);
        }
    } else {
        uint64_t rev = 0;
        r = ops->version(m, rel, &rev);
        if (r == 0)
            printf("%" PRIu64 "\n", rev);
    }
    if (fflush(stdout) != 0 && r == 0)
        r = -EIO;
    if (r < 0) {
        fprintf(stderr, "asya-state %s: %s: %s%s\n", cmd, shown, strerror(-r),
                r == -ENOENT ? "" : " (run `asya-state check` to diagnose)");
        return CLI_FAIL;
    }
    return CLI_OK;
}

static int browse_main(int argc, char **argv)
{
    const char *cmd = argv[0], *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            browse_usage(stdout, cmd);
            return CLI_OK;
        }
        if (path || (argv[i][0] == '-' && argv[i][1])) {
            fprintf(stderr, "asya-state %s: unexpected argument '%s'\n", cmd, argv[i]);
            browse_usage(stderr, cmd);
            return CLI_USAGE;
        }
        path = argv[i];
    }
    if (!path && strcmp(cmd, "ls") != 0) {
        fprintf(stderr, "asya-state %s: PATH is required\n", cmd);
        browse_usage(stderr, cmd);
        return CLI_USAGE;
    }
    struct mount_table t = { 0 };
    browse_mounts_load(&t);
    kv_mount *m = NULL;
    char rel[PATH_MAX];
    const kv_ops *ops = NULL;
    int rc = CLI_FAIL;
    if (browse_resolve(&t, path, &m, rel, sizeof rel) == 0 && browse_ops(&ops) == 0)
        rc = browse_do(cmd, ops, m, rel, path);
    mounts_free(&t);
    return rc;
}

int cmd_ls(int argc, char **argv) { return browse_main(argc, argv); }
int cmd_cat(int argc, char **argv) { return browse_main(argc, argv); }
int cmd_rev(int argc, char **argv) { return browse_main(argc, argv); }
