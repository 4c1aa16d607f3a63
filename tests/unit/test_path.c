/* test_path.c: lexical normalisation, the mount-prefix test and the hot-path pre-check
 * (shim/path.c). */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "shim/path.h"

static void pt_expect(const char *base, const char *path, const char *want)
{
    char out[PATH_MAX];
    int n = path_normalize(base, path, out, sizeof out);
    cr_assert_eq(n, (int)strlen(want), "normalize(%s, %s) = %d '%s', want '%s'",
                 base ? base : "(null)", path, n, n >= 0 ? out : "", want);
    cr_assert_str_eq(out, want);
}

Test(path, absolute)
{
    pt_expect("/ignored", "/a/b", "/a/b");
    pt_expect(NULL, "/", "/");
    pt_expect(NULL, "//a//b//", "/a/b");
    pt_expect(NULL, "/a/./b/.", "/a/b");
    pt_expect(NULL, "/a/b/../c", "/a/c");
    pt_expect(NULL, "/a/b/..", "/a");
    pt_expect(NULL, "/a/b/../..", "/");
    pt_expect(NULL, "/..", "/");
    pt_expect(NULL, "/../../x", "/x");
    pt_expect(NULL, "/./.", "/");
    pt_expect(NULL, "/a/.hidden/..b/...", "/a/.hidden/..b/...");
    pt_expect(NULL, "/state/cache/", "/state/cache");
}

Test(path, relative_against_base)
{
    pt_expect("/state/cache", "x", "/state/cache/x");
    pt_expect("/state/cache", "./x/", "/state/cache/x");
    pt_expect("/state/cache", "../x", "/state/x");
    pt_expect("/state/cache", "../../../../x", "/x");
    pt_expect("/state/cache", ".", "/state/cache");
    pt_expect("/state/cache", "..", "/state");
    pt_expect("/", "..", "/");
    pt_expect("/", "a//b", "/a/b");
    pt_expect(NULL, "a", "/a");
}

Test(path, errors)
{
    char out[8];
    cr_assert_eq(path_normalize("/", "", out, sizeof out), -ENOENT);
    cr_assert_eq(path_normalize("/", NULL, out, sizeof out), -ENOENT);
    cr_assert_eq(path_normalize("/", "/abcdef", out, 8), 7);
    cr_assert_str_eq(out, "/abcdef");
    cr_assert_eq(path_normalize("/", "/abcdefg", out, 8), -ENAMETOOLONG);
    cr_assert_eq(path_normalize("/ab", "cdefg", out, 8), -ENAMETOOLONG);
    cr_assert_eq(path_normalize("/", "/", out, 1), -ENAMETOOLONG);
    cr_assert_eq(path_normalize("/", "/", out, 2), 1);
    cr_assert_eq(path_normalize("/", "/x/../", out, 2), -ENAMETOOLONG, "intermediate too long");
}

Test(path, below)
{
    const char *m = "/state";
    size_t ml = strlen(m);
    cr_assert_str_eq(path_below("/state", m, ml), "");
    cr_assert_str_eq(path_below("/state/a", m, ml), "a");
    cr_assert_str_eq(path_below("/state/a/b.json", m, ml), "a/b.json");
    cr_assert_null(path_below("/state2", m, ml));
    cr_assert_null(path_below("/state2/a", m, ml));
    cr_assert_null(path_below("/stat", m, ml));
    cr_assert_null(path_below("/", m, ml));
    cr_assert_null(path_below("/other/state", m, ml));
    cr_assert_null(path_below("", m, ml));
    const char *p = "/state/x";
    cr_assert_eq(path_below(p, m, ml), p + 7, "rel points into path");
    /* mountlen counts: the first 6 bytes of "/state/cache" are "/state". */
    cr_assert_str_eq(path_below("/state/z", "/state/cache", 6), "z");
}

Test(path, never_escapes_a_mount)
{
    const char *m = "/state/cache";
    char out[PATH_MAX];
    const char *escapes[] = { "/state/cache/../../etc/passwd", "/state/cache/a/../../x",
                              "/state/cache/..", "/state/cache/../cache2/x" };
    for (size_t i = 0; i < sizeof escapes / sizeof *escapes; i++) {
        cr_assert_geq(path_normalize("/", escapes[i], out, sizeof out), 0);
        cr_assert_null(path_below(out, m, strlen(m)), "%s -> %s is below the mount",
                       escapes[i], out);
    }
    cr_assert_geq(path_normalize("/state/cache", "../../etc/passwd", out, sizeof out), 0);
    cr_assert_str_eq(out, "/etc/passwd");
    cr_assert_null(path_below(out, m, strlen(m)));
    /* Climbing out and back in is still inside, lexically. */
    cr_assert_geq(path_normalize("/", "/state/cache/../cache/k", out, sizeof out), 0);
    cr_assert_str_eq(path_below(out, m, strlen(m)), "k");
}

Test(path, needs_normalize)
{
    const char *clean[] = { "/a/b", "/a/.b", "/a/..b", "/a/b.", "/a/...", "/.hidden", "/a.b/c",
                            "/state/cache/user_123.json", "/x/.../y" };
    const char *dirty[] = { "/a//b", "/a/./b", "/a/../b", "/a/.", "/a/..", "/a/", "/", "//",
                            "rel", "./x", "", "/..", "/." };
    for (size_t i = 0; i < sizeof clean / sizeof *clean; i++)
        cr_assert_eq(path_needs_normalize(clean[i]), 0, "'%s'", clean[i]);
    for (size_t i = 0; i < sizeof dirty / sizeof *dirty; i++)
        cr_assert_eq(path_needs_normalize(dirty[i]), 1, "'%s'", dirty[i]);
}

/* Properties over random segment soups: the result is canonical, idempotent, and agrees
 * with a stack-of-segments model. */
static uint64_t pt_rng = 42;

static uint32_t pt_next(void)
{
    pt_rng = pt_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(pt_rng >> 33);
}

Test(path, random_properties)
{
    static const char *segs[] = { "a", "bb", "..", ".", "", "x.y", "...", ".h" };
    for (int iter = 0; iter < 20000; iter++) {
        char in[512] = "", model[512] = "";
        const char *stack[64];
        int depth = 0, nseg = (int)(pt_next() % 12);
        int absolute = pt_next() & 1;
        if (absolute)
            strcat(in, "/");
        for (int i = 0; i < nseg; i++) {
            const char *s = segs[pt_next() % 8];
            strcat(in, s);
            if (i + 1 < nseg || (pt_next() & 1))
                strcat(in, "/");
            if (strcmp(s, "..") == 0)
                depth -= depth > 0;
            else if (*s && strcmp(s, ".") != 0)
                stack[depth++] = s;
        }
        if (!*in)
            continue;
        /* base "/" for relative paths, so the model needs no base segments. */
        for (int i = 0; i < depth; i++) {
            strcat(model, "/");
            strcat(model, stack[i]);
        }
        if (!*model)
            strcpy(model, "/");
        char out[512], again[512];
        int n = path_normalize("/", in, out, sizeof out);
        cr_assert_geq(n, 1, "'%s'", in);
        cr_assert_str_eq(out, model, "'%s'", in);
        cr_assert_eq(path_needs_normalize(out), strcmp(out, "/") == 0, "'%s'", out);
        cr_assert_eq(path_normalize("/elsewhere", out, again, sizeof again), n);
        cr_assert_str_eq(again, out);
    }
}
