/* test_mounts.c: the mount table from the environment (shim/mounts.c): Asya's format,
 * STATE_MOUNT, the default, malformed input, refused write modes, missing buckets, overlaps,
 * and that every problem is exactly one stderr line naming the variable. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/kv.h"
#include "shim/mounts.h"

/* Only error lines, so the number of lines equals the number of problems reported. */
static void mt_setup(void)
{
    setenv("ASYA_STATE_LOG", "error", 1);
    cr_redirect_stderr();
}

TestSuite(mounts, .init = mt_setup);

/* The captured stderr: its line count, and whether every line mentions needle. */
static int mt_lines(const char *needle, char *all, size_t allsz)
{
    fflush(stderr);
    FILE *f = cr_get_redirected_stderr();
    char line[2048];
    int n = 0;
    size_t used = 0;
    all[0] = '\0';
    /* Nothing more is written: close our end so reading stops at the end. */
    fclose(stderr);
    while (fgets(line, sizeof line, f)) {
        n++;
        cr_assert(strncmp(line, "asya-state: ", 12) == 0, "line '%s'", line);
        if (needle)
            cr_assert(strstr(line, needle), "'%s' does not name %s", line, needle);
        size_t l = strlen(line);
        if (used + l < allsz) {
            memcpy(all + used, line, l + 1);
            used += l;
        }
    }
    return n;
}

static int mt_parse(struct mount_table *t, const char *proxy, const char *state_mount,
                    const char *bucket, const char *prefix, const char *read_cache)
{
    struct mount_env env = { proxy, state_mount, bucket, prefix, read_cache };
    return mounts_parse(&env, t);
}

Test(mounts, asya_format_several_entries)
{
    struct mount_table t;
    int r = mt_parse(&t,
                     "meta:/state/meta:write=buffered;"
                     "cache:/state/cache:write=buffered,bucket=other,prefix=cp,read=watch,"
                     "colour=blue,noequals",
                     NULL, "main", NULL, NULL);
    char log[4096];
    cr_assert_eq(r, 0);
    cr_assert_eq(mt_lines(NULL, log, sizeof log), 0, "unexpected: %s", log);
    cr_assert_eq(t.n, 2);
    cr_assert_str_eq(t.m[0].name, "meta");
    cr_assert_str_eq(t.m[0].path, "/state/meta");
    cr_assert_eq(t.m[0].pathlen, strlen("/state/meta"));
    cr_assert_str_eq(t.m[0].bucket, "main");
    cr_assert_null(t.m[0].prefix);
    cr_assert_eq(t.m[0].kv_flags, 0);
    cr_assert_eq(t.m[0].err, 0);
    cr_assert_str_eq(t.m[1].name, "cache");
    cr_assert_str_eq(t.m[1].path, "/state/cache");
    cr_assert_str_eq(t.m[1].bucket, "other");
    cr_assert_str_eq(t.m[1].prefix, "cp");
    cr_assert_eq(t.m[1].kv_flags, KV_MOUNT_WATCH);
    cr_assert_eq(t.m[1].err, 0);
    mounts_free(&t);
    cr_assert_eq(t.n, 0);
    mounts_free(&t); /* twice is harmless */
}

Test(mounts, asya_format_spacing_and_defaults)
{
    struct mount_table t;
    int r = mt_parse(&t, " a : /p1//x/./ : write = buffered , bucket = bk2 ; ; b:/p2 ;", "/ignored", "bk",
                     "sp", "watch");
    cr_assert_eq(r, 0);
    cr_assert_eq(t.n, 2);
    cr_assert_str_eq(t.m[0].name, "a");
    cr_assert_str_eq(t.m[0].path, "/p1/x");
    cr_assert_str_eq(t.m[1].path, "/p2"); /* options are optional */
    cr_assert_str_eq(t.m[0].bucket, "bk2");
    cr_assert_str_eq(t.m[1].bucket, "bk");
    for (int i = 0; i < 2; i++) {
        cr_assert_str_eq(t.m[i].prefix, "sp");
        cr_assert_eq(t.m[i].kv_flags, KV_MOUNT_WATCH);
        cr_assert_eq(t.m[i].err, 0);
    }
    mounts_free(&t);
}

Test(mounts, read_modes)
{
    /* read=meta per mount; a mount's read= replaces STATE_READ_CACHE's mode; another value
     * is ignored with a warning (counted; warnings are not captured here), keeping the
     * default */
    struct mount_table t;
    int r = mt_parse(&t, "a:/a:read=meta,prefix=a;b:/b:read=watch,prefix=b;c:/c:prefix=c;"
                     "d:/d:read=values,prefix=d", NULL, "bk",
                     NULL, "meta");
    cr_assert_eq(r, 0);
    cr_assert_eq(t.n, 4);
    cr_assert_eq(t.m[0].kv_flags, KV_MOUNT_META);
    cr_assert_eq(t.m[1].kv_flags, KV_MOUNT_WATCH);
    cr_assert_eq(t.m[2].kv_flags, KV_MOUNT_META);
    cr_assert_eq(t.m[3].kv_flags, KV_MOUNT_META);
    cr_assert_eq(t.warnings, 1);
    mounts_free(&t);

    cr_assert_eq(mt_parse(&t, NULL, "/s", "bk", NULL, "everything"), 0);
    cr_assert_eq(t.m[0].kv_flags, 0);
    cr_assert_eq(t.warnings, 1);
    mounts_free(&t);
}

Test(mounts, state_mount_and_default)
{
    struct mount_table t;
    cr_assert_eq(mt_parse(&t, NULL, "/data/st/", "b", "pre", NULL), 0);
    cr_assert_eq(t.n, 1);
    cr_assert_str_eq(t.m[0].name, "");
    cr_assert_str_eq(t.m[0].path, "/data/st");
    cr_assert_str_eq(t.m[0].prefix, "pre");
    cr_assert_eq(t.m[0].err, 0);
    mounts_free(&t);

    cr_assert_eq(mt_parse(&t, NULL, NULL, "b", NULL, NULL), 0);
    cr_assert_eq(t.n, 1);
    cr_assert_str_eq(t.m[0].path, "/state");
    cr_assert_eq(t.m[0].pathlen, 6);
    mounts_free(&t);

    /* Set but empty (or only separators) counts as unset, as in Asya's runtime. */
    cr_assert_eq(mt_parse(&t, " ; ;", "/s2", "b", NULL, NULL), 0);
    cr_assert_eq(t.n, 1);
    cr_assert_str_eq(t.m[0].path, "/s2");
    mounts_free(&t);
}

Test(mounts, malformed_falls_to_failing_state)
{
    struct mount_table t;
    char log[4096];
    int r = mt_parse(&t, "garbage", NULL, "b", NULL, NULL);
    int lines = mt_lines("ASYA_STATE_PROXY_MOUNTS", log, sizeof log);
    cr_assert_geq(r, 1);
    cr_assert_eq(lines, r, "%d problems, %d lines: %s", r, lines, log);
    cr_assert_eq(t.n, 1);
    cr_assert_str_eq(t.m[0].path, "/state");
    cr_assert_eq(t.m[0].err, -EIO);
    mounts_free(&t);
}

Test(mounts, malformed_entry_beside_good_one)
{
    struct mount_table t;
    char log[4096];
    int r = mt_parse(&t, "good:/g;garbage;root:/;nopath:", NULL, "b", NULL, NULL);
    cr_assert_eq(r, 3);
    cr_assert_eq(mt_lines("ASYA_STATE_PROXY_MOUNTS", log, sizeof log), 3, "%s", log);
    cr_assert(strstr(log, "garbage"), "entry not named: %s", log);
    cr_assert_eq(t.n, 1);
    cr_assert_str_eq(t.m[0].path, "/g");
    cr_assert_eq(t.m[0].err, 0);
    mounts_free(&t);
}

Test(mounts, relative_path_fails_with_eio)
{
    struct mount_table t;
    char log[4096];
    cr_assert_eq(mt_parse(&t, "rel:state/x", NULL, "b", NULL, NULL), 1);
    cr_assert_eq(mt_lines("ASYA_STATE_PROXY_MOUNTS", log, sizeof log), 1);
    cr_assert_eq(t.n, 1);
    cr_assert_str_eq(t.m[0].path, "/state/x");
    cr_assert_eq(t.m[0].err, -EIO);
    mounts_free(&t);

    cr_assert_eq(mt_parse(&t, NULL, "/", "b", NULL, NULL), 1);
    cr_assert_str_eq(t.m[0].path, "/state");
    cr_assert_eq(t.m[0].err, -EIO);
    mounts_free(&t);
}

Test(mounts, other_write_mode_is_enotsup)
{
    struct mount_table t;
    char log[4096];
    int r = mt_parse(&t, "w:/state/w:write=buffered;media:/state/media:write=passthrough", NULL,
                     "b", NULL, NULL);
    cr_assert_eq(r, 1);
    cr_assert_eq(mt_lines("write=passthrough", log, sizeof log), 1);
    cr_assert(strstr(log, "ASYA_STATE_PROXY_MOUNTS"), "%s", log);
    cr_assert_eq(t.n, 2);
    cr_assert_eq(t.m[0].err, 0);
    cr_assert_eq(t.m[1].err, -ENOTSUP);
    mounts_free(&t);
}

Test(mounts, missing_bucket)
{
    struct mount_table t;
    char log[4096];
    int r = mt_parse(&t, "a:/a;b:/b:bucket=own", NULL, NULL, NULL, NULL);
    cr_assert_eq(r, 1);
    cr_assert_eq(mt_lines("NATS_KV_BUCKET", log, sizeof log), 1);
    cr_assert_null(t.m[0].bucket);
    cr_assert_eq(t.m[0].err, -EIO);
    cr_assert_str_eq(t.m[1].bucket, "own");
    cr_assert_eq(t.m[1].err, 0);
    mounts_free(&t);
}

Test(mounts, missing_bucket_state_mount)
{
    struct mount_table t;
    char log[4096];
    cr_assert_eq(mt_parse(&t, NULL, NULL, NULL, NULL, NULL), 1);
    cr_assert_eq(mt_lines("NATS_KV_BUCKET", log, sizeof log), 1);
    cr_assert_str_eq(t.m[0].path, "/state");
    cr_assert_eq(t.m[0].err, -EIO);
    mounts_free(&t);
}

Test(mounts, bad_names)
{
    struct mount_table t;
    char log[4096];
    /* A bad NATS_KV_BUCKET is one problem; a mount with its own bucket= is unaffected. */
    int r = mt_parse(&t, "a:/a;b:/b:bucket=ok;c:/c:bucket=no.dots,prefix=cp;d:/d:prefix=.bad",
                     NULL, "bad bucket", NULL, NULL);
    cr_assert_eq(r, 3);
    cr_assert_eq(mt_lines(NULL, log, sizeof log), 3, "%s", log);
    cr_assert(strstr(log, "NATS_KV_BUCKET"), "%s", log);
    cr_assert_eq(t.n, 4);
    cr_assert_eq(t.m[0].err, -EIO);
    cr_assert_eq(t.m[1].err, 0);
    cr_assert_eq(t.m[2].err, -EIO);
    cr_assert_eq(t.m[3].err, -EIO);
    mounts_free(&t);

    cr_assert_eq(mt_parse(&t, NULL, NULL, "b", "a..b", NULL), 1);
    cr_assert_eq(t.m[0].err, -EIO);
    mounts_free(&t);
}

Test(mounts, empty_prefix_option_overrides_state_prefix)
{
    struct mount_table t;
    cr_assert_eq(mt_parse(&t, "a:/a:prefix=;b:/b:bucket=b2", NULL, "b", "sp", NULL), 0);
    cr_assert_null(t.m[0].prefix);
    cr_assert_str_eq(t.m[1].prefix, "sp");
    mounts_free(&t);
}

/* Parses two mounts on one bucket with prefixes pa/pb ("-" for none) and returns whether
 * they were refused as overlapping. */
static int mt_overlap(const char *pa, const char *pb)
{
    char spec[256];
    struct mount_table t;
    snprintf(spec, sizeof spec, "a:/a%s%s;b:/b%s%s;c:/c:bucket=elsewhere",
             *pa == '-' ? "" : ":prefix=", *pa == '-' ? "" : pa,
             *pb == '-' ? "" : ":prefix=", *pb == '-' ? "" : pb);
    int r = mt_parse(&t, spec, NULL, "shared", NULL, NULL);
    cr_assert_eq(t.n, 3);
    cr_assert_eq(t.m[2].err, 0, "an unrelated mount is never refused");
    cr_assert_eq(t.m[0].err, t.m[1].err, "both or neither: %s", spec);
    int refused = t.m[0].err == -EIO;
    cr_assert_eq(r, refused, "%s: %d problems", spec, r);
    mounts_free(&t);
    return refused;
}

Test(mounts, overlapping_key_spaces)
{
    cr_assert(mt_overlap("-", "-"));
    cr_assert(mt_overlap("-", "p"));
    cr_assert(mt_overlap("p", "-"));
    cr_assert(mt_overlap("p", "p"));
    cr_assert(mt_overlap("a", "a.b"));
    cr_assert(mt_overlap("a.b.c", "a.b"));
    cr_assert_not(mt_overlap("a", "ab"));
    cr_assert_not(mt_overlap("a.b", "a.c"));
    cr_assert_not(mt_overlap("ab.c", "a"));
    cr_assert_not(mt_overlap("a/b", "a"));
}

Test(mounts, overlap_names_both_mounts)
{
    struct mount_table t;
    char log[4096];
    cr_assert_eq(mt_parse(&t, "x:/state/x;y:/state/y", NULL, "b", "same", NULL), 1);
    cr_assert_eq(mt_lines("ASYA_STATE_PROXY_MOUNTS", log, sizeof log), 1);
    cr_assert(strstr(log, "/state/x") && strstr(log, "/state/y"), "%s", log);
    mounts_free(&t);
}

Test(mounts, different_buckets_do_not_overlap)
{
    struct mount_table t;
    cr_assert_eq(mt_parse(&t, "x:/x:bucket=one;y:/y:bucket=two", NULL, NULL, NULL, NULL), 0);
    cr_assert_eq(t.m[0].err, 0);
    cr_assert_eq(t.m[1].err, 0);
    mounts_free(&t);
}

Test(mounts, too_many_mounts)
{
    char spec[8192] = "";
    struct mount_table t;
    char log[4096];
    for (int i = 0; i < MOUNTS_MAX + 2; i++) {
        char e[64];
        snprintf(e, sizeof e, "m%d:/m%d:prefix=p%d;", i, i, i);
        strcat(spec, e);
    }
    int r = mt_parse(&t, spec, NULL, "b", NULL, NULL);
    cr_assert_eq(r, 2);
    /* one line for the refusal, not one per extra mount */
    cr_assert_eq(mt_lines("ASYA_STATE_PROXY_MOUNTS", log, sizeof log), 1);
    cr_assert_eq(t.n, MOUNTS_MAX);
    for (int i = 0; i < t.n; i++)
        cr_assert_eq(t.m[i].err, -EIO); /* refused whole: none served, none silently local */
    /* the mounts past the table are found too, failing alike: never the local disk */
    cr_assert_eq(t.nextra, 2);
    char past[32];
    snprintf(past, sizeof past, "/m%d/f", MOUNTS_MAX + 1);
    const struct mount *m = mounts_find(&t, past, NULL);
    cr_assert(m != NULL);
    cr_assert_eq(m->err, -EIO);
    mounts_free(&t);
}

Test(mounts, find_first_match_wins)
{
    struct mount_table t;
    const char *rel = NULL;
    cr_assert_eq(mt_parse(&t, "c:/state/cache:prefix=c;s:/state:prefix=s;d:/data:prefix=d",
                          NULL, "b", NULL, NULL), 0);
    const struct mount *m = mounts_find(&t, "/state/cache/u.json", &rel);
    cr_assert_eq(m, &t.m[0]);
    cr_assert_str_eq(rel, "u.json");
    m = mounts_find(&t, "/state/cache", &rel);
    cr_assert_eq(m, &t.m[0]);
    cr_assert_str_eq(rel, "");
    m = mounts_find(&t, "/state/cache2/x", &rel);
    cr_assert_eq(m, &t.m[1]);
    cr_assert_str_eq(rel, "cache2/x");
    m = mounts_find(&t, "/data", &rel);
    cr_assert_eq(m, &t.m[2]);
    cr_assert_null(mounts_find(&t, "/state2", &rel));
    cr_assert_null(mounts_find(&t, "/", &rel));
    cr_assert_null(mounts_find(&t, "/etc/passwd", NULL));
    mounts_free(&t);
    cr_assert_null(mounts_find(&t, "/data", &rel), "an empty table finds nothing");
}
