/* check.c: `asya-state check`, the one-minute diagnosis. Owns the list of checks, in the
 * order a setup fails: configuration, mounts (shim/mounts.c's parser), the server (kv/'s own
 * connection, so the same environment as the shim), each mount's bucket (exists; replicated
 * on a server older than 2.11), and a write/read/delete of a probe key under each mount's
 * prefix through kv/'s operations (--read-only: a listing of each mount instead, nothing
 * written), and one scan of each mount's keys for directories without a marker (keys other
 * clients wrote below a directory nobody made) and for delete markers (kv/tombs.c); --fix
 * writes the missing markers, create-only, and removes the delete markers older than
 * TOMBS_GRACE_S (a problem, with the reason, when the server refuses: no purge permission).
 * One line per check, "ok" or "problem" plus what to do; the exit status is 3
 * (a server or configuration problem) when any check found a problem. Settings that the
 * shim ignores with a warning (unknown mount options, an ASYA_STATE_LOG that is no level)
 * are problems here: they are typos until proven otherwise.
 */
#include "cli/cli.h"
#include "cli/browse.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uthash.h>

#include "common/log.h"
#include "kv/internal.h"
#include "kv/keycodec.h"

static int check_problems;

static void check_line(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check_line(int ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%-8s ", ok ? "ok" : "problem");
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
    if (!ok)
        check_problems++;
}

static void check_usage(FILE *out)
{
    fprintf(out,
            "usage: asya-state check [--read-only | --fix]\n"
            "\n"
            "Checks the setup with the environment the shim and the sidecar use: the\n"
            "configuration, the mounts, the server, each bucket, and a write/read/delete of a\n"
            "probe key under each mount's prefix; reports directories without a marker (keys\n"
            "written below a directory by other clients) and delete markers. Prints one line\n"
            "per check; exits 3 when any found a problem.\n"
            "\n"
            "  -r, --read-only   list each mount instead of writing a probe key\n"
            "  -f, --fix         write the missing directory markers (create-only) and remove\n"
            "                    delete markers older than %d s (and the deleted keys' history)\n"
            "  -h, --help        this help\n", TOMBS_GRACE_S);
    cli_help_footer(out);
}

/* Same lookup as kv/conn.c: nats.c 3.4 exports no public accessor for the server version.
 * 1 older than 2.11, 0 not, -1 unknown. */
/* The bucket's checks. 0 when it exists, else a negative errno (reported). */
static int check_bucket(kv_conn *c, const char *bucket)
{
    char stream[300];
    snprintf(stream, sizeof stream, "KV_%s", bucket);
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    kv_guard g;
    guard_enter(&g, GUARD_THREADS);
    natsStatus s = js_GetStreamInfo(&si, c->js, stream, NULL, &jerr);
    const char *why = NULL;
    int r = s == NATS_OK ? 0 : kv_errmap(s, jerr, &why);
    int64_t replicas = 1;
    if (s == NATS_OK) {
        replicas = si->Config->Replicas;
        jsStreamInfo_Destroy(si);
    }
    int older = replicas > 1 ? conn_server_older_than_2_11(c->nc) : 0;
    guard_leave(&g);
    if (s == NATS_NOT_FOUND || jerr == 10059 || r == -ENOENT) {
        check_line(0, "bucket %s: does not exist: create it with `asya-state bucket add %s`",
                   bucket, bucket);
        return -ENOENT;
    }
    if (r < 0) {
        check_line(0, "bucket %s: cannot read its stream info (%s): check the account has "
                      "JetStream and the permissions to $JS.API.STREAM.INFO.%s",
                   bucket, why ? why : strerror(-r), stream);
        return r;
    }
    check_line(1, "bucket %s: exists (%lld replica%s)", bucket, (long long)replicas,
               replicas == 1 ? "" : "s");
    if (older != 0)
        check_line(0, "bucket %s: %lld replicas on a server %s: compare-and-set is not exact "
                      "under contention before nats-server 2.11; upgrade the server or use 1 "
                      "replica", bucket, (long long)replicas,
                   older > 0 ? "older than 2.11" : "of unknown version");
    return 0;
}

/* A listing of the mount's root: what --read-only checks instead of the probe. */
static void check_list(const kv_ops *ops, const struct mount *mt)
{
    kv_mount *m;
    kv_list l = { 0 };
    int r = ops->mount(mt->bucket, mt->prefix, 0, &m);
    if (r == 0)
        r = ops->list(m, "", &l);
    if (r == 0) {
        check_line(1, "mount %s: listed %zu entr%s in %s%s%s (read-only: nothing written)",
                   mt->path, l.n, l.n == 1 ? "y" : "ies", mt->bucket,
                   mt->prefix ? " under " : "", mt->prefix ? mt->prefix : "");
        ops->release_list(&l);
    } else {
        check_line(0, "mount %s: listing failed (%s): %s", mt->path, strerror(-r),
                   r == -EACCES ? "the user lacks subscribe permission on the bucket's "
                                  "subjects" : "see the asya-state: line above");
    }
}

/* Write/read/delete of a probe key under the mount. */
static void check_probe(const kv_ops *ops, const struct mount *mt)
{
    kv_mount *m;
    char rel[64];
    snprintf(rel, sizeof rel, "asya-state-check-%ld", (long)getpid());
    const char *what = "mount";
    int r = ops->mount(mt->bucket, mt->prefix, 0, &m);
    uint64_t rev = 0;
    kv_value v = { 0 };
    if (r == 0 && (what = "write", r = ops->commit(m, rel, "probe", 5, 0, &rev)) == 0) {
        what = "read";
        r = ops->get(m, rel, &v);
        if (r == 0 && (v.len != 5 || memcmp(v.data, "probe", 5) != 0))
            r = -EIO;
        ops->release_value(&v);
        int rr = ops->remove(m, rel);
        if (r == 0 && rr < 0) {
            what = "delete";
            r = rr;
        }
    }
    if (r == 0)
        check_line(1, "mount %s: wrote, read and deleted a probe key in %s%s%s", mt->path,
                   mt->bucket, mt->prefix ? " under " : "", mt->prefix ? mt->prefix : "");
    else
        check_line(0, "mount %s: probe %s failed (%s): %s", mt->path, what, strerror(-r),
                   r == -EACCES ? "the user lacks publish/subscribe permission on the "
                                  "bucket's subjects"
                   : r == -EFBIG ? "the bucket's max value size is tiny"
                                 : "see the asya-state: line above");
}

/* ---- directory markers and delete markers ---- */

typedef struct dir_seen {
    UT_hash_handle hh;
    int has_marker;
    char key[];         /* the directory's marker key, "<key of rel>/" */
} dir_seen;

typedef struct dirs_arg {
    size_t blen;        /* "prefix." */
    dir_seen *dirs;
    int err;
} dirs_arg;

static dir_seen *dir_add(dirs_arg *a, const char *key, size_t n)
{
    dir_seen *d = NULL;
    HASH_FIND(hh, a->dirs, key, n, d);
    if (d || !(d = calloc(1, sizeof *d + n + 1)))
        return d;
    memcpy(d->key, key, n);
    HASH_ADD_KEYPTR(hh, a->dirs, d->key, n, d);
    return d;
}

/* Each live key: every directory above it (one that decodes, as a listing would show it),
 * and whether the key is itself a directory marker. */
static int dirs_fn(const char *key, void *arg)
{
    dirs_arg *a = arg;
    char rel[KV_KEY_MAX + 1];
    for (const char *p = strchr(key + a->blen, '/'); p; p = strchr(p + 1, '/')) {
        size_t n = (size_t)(p - key) + 1;
        if (n <= a->blen + 1 || key_decode(key + a->blen, n - 1 - a->blen, rel, sizeof rel) < 0)
            continue;
        dir_seen *d = dir_add(a, key, n);
        if (!d) {
            a->err = -ENOMEM;
            return -ENOMEM;
        }
        if (p[1] == '\0')
            d->has_marker = 1;
    }
    return 0;
}

/* One scan of the mount's keys: directories without a marker, delete markers; --fix
 * repairs both. */
static void check_markers(const struct mount *mt, int fix)
{
    kv_mount *m = NULL;
    kv_conn *c = NULL;
    const kv_bucket *b = NULL;
    char base[KV_KEY_MAX + 2];
    snprintf(base, sizeof base, "%s%s", mt->prefix ? mt->prefix : "", mt->prefix ? "." : "");
    int r = kv_backend()->mount(mt->bucket, mt->prefix, 0, &m);
    if (r == 0)
        r = ops_open(m, "(check)", &c, &b);
    if (r < 0) {
        check_line(0, "mount %s: cannot scan its keys (%s)", mt->path, strerror(-r));
        return;
    }
    dirs_arg a = { .blen = strlen(base) };
    tombs_policy(fix ? TOMBS_ALL : TOMBS_OFF);
    r = dirs_scan(c, b, m->prefix, base, dirs_fn, &a);
    tombs_stats ts;
    tombs_last(&ts);
    tombs_policy(TOMBS_OFF); /* check's other scans (--read-only's listing) remove nothing */
    if (r == 0 && a.err)
        r = a.err;
    size_t missing = 0, written = 0;
    char names[200] = "";
    dir_seen *d, *tmp;
    HASH_ITER(hh, a.dirs, d, tmp) {
        /* d is calloc'd by dir_add (cppcheck loses it in uthash's macros) */
        /* cppcheck-suppress uninitvar */
        if (r == 0 && !d->has_marker) {
            missing++;
            char rel[KV_KEY_MAX + 1];
            size_t len = strlen(names);
            if (key_decode(d->key + a.blen, strlen(d->key) - a.blen - 1, rel, sizeof rel) >= 0 &&
                len + strlen(rel) + 6 < sizeof names) {
                if (len)
                    memcpy(names + len, ", ", 2), len += 2;
                memcpy(names + len, rel, strlen(rel) + 1);
            }
            else if (len + 6 < sizeof names && !strstr(names, "..."))
                snprintf(names + len, sizeof names - len, "%s...", len ? ", " : "");
            uint64_t rev = 0;
            int w = fix ? ops_publish(c, b, d->key, "", 0, KV_REV_ABSENT, 0, &rev) : -1;
            if (w == 0 || (fix && w == -EEXIST))
                written++;
        }
        /* uthash's idiom: NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
        HASH_DEL(a.dirs, d);
        free(d);
    }
    conn_release(c);
    if (r < 0) {
        check_line(0, "mount %s: scanning its keys failed (%s): see the asya-state: line above",
                   mt->path, strerror(-r));
        return;
    }
    if (missing == 0)
        check_line(1, "mount %s: every directory has its marker", mt->path);
    else if (fix)
        check_line(written == missing, "mount %s: %zu director%s without a marker (%s): "
                   "%zu marker%s written", mt->path, missing, missing == 1 ? "y" : "ies",
                   names, written, written == 1 ? "" : "s");
    else
        check_line(0, "mount %s: %zu director%s without a marker (%s): stat says ENOENT "
                   "until a listing of the parent writes it; `asya-state check --fix` writes "
                   "them", mt->path, missing, missing == 1 ? "y" : "ies", names);
    if (fix && ts.removed < ts.removable)
        check_line(0, "mount %s: %zu delete marker%s, %zu of %zu old enough removed: %s",
                   mt->path, ts.seen, ts.seen == 1 ? "" : "s", ts.removed, ts.removable,
                   ts.why ? ts.why : "unknown reason");
    else if (fix)
        check_line(1, "mount %s: %zu delete marker%s, %zu removed (younger than %d s kept)",
                   mt->path, ts.seen, ts.seen == 1 ? "" : "s", ts.removed, TOMBS_GRACE_S);
    else
        check_line(1, "mount %s: %zu delete marker%s (listings pass over them; "
                   "`asya-state check --fix` removes those older than %d s)", mt->path,
                   ts.seen, ts.seen == 1 ? "" : "s", TOMBS_GRACE_S);
}

int cmd_check(int argc, char **argv)
{
    static const struct option lo[] = {
        { "read-only", no_argument, NULL, 'r' }, { "fix", no_argument, NULL, 'f' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int read_only = 0, fix = 0;
    optind = 0;
    for (int c; (c = getopt_long(argc, argv, ":rfh", lo, NULL)) != -1;) {
        if (c == 'r')
            read_only = 1;
        else if (c == 'f')
            fix = 1;
        else if (c == 'h') {
            check_usage(stdout);
            return CLI_OK;
        } else
            return cli_bad_option("check", c, argv);
    }
    if (optind < argc)
        return cli_usage_error("check", "unexpected argument '%s'", argv[optind]);
    if (read_only && fix)
        return cli_usage_error("check", "--fix writes: it cannot go with --read-only");
    check_problems = 0;
    tombs_policy(TOMBS_OFF); /* only --fix removes delete markers (check_markers) */

    /* configuration */
    const kv_ops *ops = NULL;
    const char *url = getenv("NATS_URL");
    if (!url || !*url) {
        check_line(0, "config: NATS_URL is not set: export NATS_URL=nats://HOST:4222");
    } else if (browse_ops(&ops) < 0) {
        check_line(0, "config: the variable named above is malformed: fix it");
        ops = NULL;
    } else {
        const kv_config *cfg;
        kv_config_get(&cfg);
        check_line(1, "config: NATS_URL=%s%s%s%s%s", cfg->url_safe,
                   cfg->creds_file ? ", NATS_CREDS_FILE" : "",
                   cfg->seed_file ? ", NATS_NKEY_SEED_FILE" : "",
                   cfg->user ? ", NATS_USER/NATS_PASSWORD" : "",
                   cfg->token ? ", NATS_TOKEN" : "");
    }
    const char *badlog = log_env_bad();
    if (badlog)
        check_line(0, "config: ASYA_STATE_LOG=%s is not a level: set error, warn, info or "
                      "debug (warn is used)", badlog);

    /* mounts */
    struct mount_table t = { 0 };
    int bad = browse_mounts_load(&t);
    for (int i = 0; i < t.n; i++) {
        const struct mount *mt = &t.m[i];
        if (mt->err == 0 && mt->bucket)
            check_line(1, "mount %s: bucket %s, prefix %s", mt->path, mt->bucket,
                       mt->prefix ? mt->prefix : "(none)");
        else if (!mt->bucket)
            check_line(0, "mount %s: no bucket: set NATS_KV_BUCKET or bucket= in "
                          "ASYA_STATE_PROXY_MOUNTS", mt->path);
        else
            check_line(0, "mount %s: unusable (%s): see the configuration line above "
                          "(overlapping prefixes in one bucket, or a write mode other than "
                          "buffered)", mt->path, strerror(-mt->err));
    }
    if (bad > 0)
        check_line(0, "mounts: %d problem%s in ASYA_STATE_PROXY_MOUNTS/STATE_MOUNT (named "
                      "above): fix the entries", bad, bad == 1 ? "" : "s");
    if (t.warnings > 0)
        check_line(0, "mounts: %d setting%s ignored (named above: an unknown option, "
                      "read= or STATE_READ_CACHE other than watch or meta): fix or remove %s",
                   t.warnings, t.warnings == 1 ? "" : "s", t.warnings == 1 ? "it" : "them");

    /* server, buckets, probes */
    kv_conn *c = NULL;
    if (ops) {
        int r = conn_acquire(&c, "check");
        if (r < 0) {
            c = NULL;
            check_line(0, "server: cannot connect (%s): %s", strerror(-r),
                       r == -EACCES ? "login refused: check NATS_CREDS_FILE, "
                                      "NATS_NKEY_SEED_FILE or the token/user in NATS_URL"
                       : r == -ETIMEDOUT ? "no answer in time: check the address, firewall, "
                                           "NATS_TIMEOUT_MS"
                                         : "unreachable: is nats-server running (with -js) "
                                           "at NATS_URL?");
        } else {
            check_line(1, "server: connected");
        }
    }
    for (int i = 0; c && i < t.n; i++) {
        const struct mount *mt = &t.m[i];
        if (mt->err || !mt->bucket)
            continue;
        int seen = 0;
        for (int j = 0; j < i; j++)
            seen |= !t.m[j].err && t.m[j].bucket && strcmp(t.m[j].bucket, mt->bucket) == 0;
        static int bucket_ok[MOUNTS_MAX];
        if (!seen)
            bucket_ok[i] = check_bucket(c, mt->bucket) == 0;
        else
            for (int j = 0; j < i; j++)
                if (t.m[j].bucket && strcmp(t.m[j].bucket, mt->bucket) == 0)
                    bucket_ok[i] = bucket_ok[j];
        if (bucket_ok[i] && read_only)
            check_list(ops, mt);
        else if (bucket_ok[i])
            check_probe(ops, mt);
        if (bucket_ok[i])
            check_markers(mt, fix);
    }
    if (c)
        conn_release(c);
    mounts_free(&t);
    if (check_problems) {
        printf("%d problem%s found\n", check_problems, check_problems == 1 ? "" : "s");
        return CLI_ERROR;
    }
    printf("all checks passed\n");
    return CLI_OK;
}
