/* test_mindex.c: the read cache's index (kv/mindex.c) without a server: what stat, a listing
 * and a value scan find after the changes a walk and this process note, and the bytes it
 * holds per key (issue 12: <= 200 for read=meta; bench/mirror.py measures the process's RSS). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/internal.h"

static int set(mindex *x, const char *key, uint64_t rev, int live, int local)
{
    void *none = NULL;
    return mindex_set(x, key, &none, live ? 3 : 0, rev, (int64_t)rev * 1000, live, local);
}

typedef struct {
    char seen[512];
} listing;

static int collect(void *arg, const char *key, int kind)
{
    listing *l = arg;
    static const char *names[] = { "self", "value", "marker", "below" };
    size_t n = strlen(l->seen);
    snprintf(l->seen + n, sizeof l->seen - n, "%s%s=%s", n ? " " : "", key, names[kind]);
    return 0;
}

/* Children are listed newest first (each is put at the head of its directory's list). */
static const char *list(mindex *x, const char *base)
{
    static listing l;
    l.seen[0] = '\0';
    cr_assert_eq(mindex_children(x, base, collect, &l), 0);
    return l.seen;
}

Test(mindex, stat_and_listing_of_nested_keys)
{
    mindex *x = mindex_new("p.");
    cr_assert_not_null(x);
    cr_assert_eq(set(x, "p.a/b/c.json", 5, 1, 0), 0);
    cr_assert_eq(set(x, "p.a/", 6, 1, 0), 0);      /* a's marker; b has none */
    cr_assert_eq(set(x, "q.other", 7, 1, 0), 0);   /* not under the prefix: ignored */
    mindex_entry e;
    cr_assert_eq(mindex_get(x, "p.a/b/c.json", &e), 0);
    cr_assert(!e.is_dir);
    cr_assert_eq(e.len, 3);
    cr_assert_eq(e.rev, 5);
    cr_assert_eq(e.time_ns, 5000);
    cr_assert_eq(mindex_get(x, "p.a/", &e), 0);
    cr_assert(e.is_dir);
    cr_assert_eq(mindex_get(x, "p.a/b/", &e), -ENOENT, "b has no marker");
    cr_assert_eq(mindex_get(x, "p.a", &e), -ENOENT, "a file a and a directory a/ differ");
    cr_assert_eq(mindex_get(x, "p.", &e), -ENOENT, "the root is no key");
    cr_assert_eq(mindex_get(x, "q.other", &e), -ENOENT);
    cr_assert_str_eq(list(x, "p."), "p.a/=marker");
    cr_assert_str_eq(list(x, "p.a/"), "p.a/=self p.a/b/=below");
    cr_assert_str_eq(list(x, "p.a/b/"), "p.a/b/c.json=value");
    cr_assert_str_eq(list(x, "p.zz/"), "");
    cr_assert_eq(mindex_count(x), 3, "a/, b/, c.json");
    mindex_free(x);
}

Test(mindex, deletes_prune_directories_and_keep_newer_states)
{
    mindex *x = mindex_new("");
    cr_assert_eq(set(x, "d/e/f", 10, 1, 0), 0);
    cr_assert_eq(set(x, "d/e/f", 9, 0, 0), 0);     /* older than what it has: ignored */
    mindex_entry e;
    cr_assert_eq(mindex_get(x, "d/e/f", &e), 0);
    cr_assert_eq(set(x, "d/e/f", 11, 0, 1), 0);    /* this process deleted it: a tombstone */
    cr_assert_eq(mindex_get(x, "d/e/f", &e), -ENOENT);
    cr_assert_str_eq(list(x, "d/e/"), "");
    cr_assert_str_eq(list(x, ""), "", "nothing live below d/: not listed");
    cr_assert_eq(mindex_count(x), 3, "the tombstone keeps its directories");
    cr_assert_eq(set(x, "d/e/f", 11, 0, 0), 0);    /* the walk delivers that delete */
    cr_assert_eq(mindex_count(x), 0, "d/ and d/e/ went with their last key");
    cr_assert_eq(set(x, "never/had", 12, 0, 0), 0); /* another's delete of an unknown key */
    cr_assert_eq(mindex_count(x), 0);
    /* an empty component is a directory too: "a//b" is "b" in the directory "a//" */
    cr_assert_eq(set(x, "a//b", 13, 1, 0), 0);
    cr_assert_str_eq(list(x, "a//"), "a//b=value");
    cr_assert_str_eq(list(x, "a/"), "a//=below");
    mindex_free(x);
}

static int each_fn(void *arg, const char *key, const void *data, size_t len, uint64_t rev)
{
    listing *l = arg;
    size_t n = strlen(l->seen);
    snprintf(l->seen + n, sizeof l->seen - n, "%s%s=%.*s@%llu", n ? " " : "", key, (int)len,
             (const char *)data, (unsigned long long)rev);
    return 0;
}

Test(mindex, values_are_taken_and_scanned_with_their_full_keys)
{
    mindex *x = mindex_new("pre.");
    void *v = strdup("xyz");
    cr_assert_eq(mindex_set(x, "pre.u/1/state.json", &v, 3, 1, 0, 1, 0), 0);
    cr_assert_null(v, "the value is the index's now");
    mindex_entry e;
    cr_assert_eq(mindex_get(x, "pre.u/1/state.json", &e), 0);
    cr_assert_eq(memcmp(e.data, "xyz", 3), 0);
    listing l = { "" };
    cr_assert_eq(mindex_each(x, each_fn, &l), 0);
    cr_assert_str_eq(l.seen, "pre.u/1/state.json=xyz@1", "the value, with its revision");
    mindex_clear(x);
    cr_assert_eq(mindex_get(x, "pre.u/1/state.json", &e), -ENOENT);
    mindex_free(x); /* the value freed with it: ASan (make asan) checks */
}

/* The nested layout of bench/mirror.py (a file and its directory per key): two nodes per key,
 * under 200 bytes per key in the index's own blocks and table. Removing every key and adding
 * them again reuses the removed nodes' bytes. */
Test(mindex, bytes_per_key_of_a_nested_layout)
{
    enum { N = 20000 };
    mindex *x = mindex_new("m.");
    char key[64];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "m.users/u%d/state.json", i);
        cr_assert_eq(set(x, key, (uint64_t)i + 1, 1, 0), 0);
    }
    cr_assert_eq(mindex_count(x), 2 * N + 1);
    size_t bytes = mindex_bytes(x);
    cr_log_info("mindex: %zu bytes for %d nested keys = %zu per key", bytes, N, bytes / N);
    cr_assert_leq(bytes / N, 200);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "m.users/u%d/state.json", i);
        cr_assert_eq(set(x, key, (uint64_t)N + i + 1, 0, 0), 0);
    }
    cr_assert_eq(mindex_count(x), 0);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "m.users/u%d/state.json", i);
        cr_assert_eq(set(x, key, (uint64_t)2 * N + i + 1, 1, 0), 0);
    }
    cr_assert_eq(mindex_bytes(x), bytes, "the removed nodes were reused");
    mindex_free(x);
}
