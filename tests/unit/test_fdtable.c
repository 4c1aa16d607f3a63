/* test_fdtable.c: the descriptor table: set/get/take, shared records (dup), reference counts,
 * iteration across chunks, range limits, and the change-detection hash. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "shim/fdtable.h"

static struct shim_file *record(const char *rel)
{
    struct shim_file *f = calloc(1, sizeof *f);
    cr_assert_not_null(f);
    f->rel = strdup(rel);
    return f;
}

Test(fdtable, set_get_take_unref)
{
    struct shim_file *f = record("a");
    cr_assert_eq(fdtable_set(7, f), 0);
    cr_assert_eq(fdtable_get(7), f);
    cr_assert_null(fdtable_get(8));
    cr_assert_eq(f->refs, 1);
    int last = 0;
    struct shim_file *t = fdtable_take(7, &last);
    cr_assert_eq(t, f);
    cr_assert(last);
    cr_assert_null(fdtable_get(7));
    cr_assert_null(fdtable_take(7, NULL));
    cr_assert_eq(fdtable_unref(t), 0); /* freed */
}

Test(fdtable, a_held_record_outlives_a_close_in_another_thread)
{
    struct shim_file *f = record("held");
    cr_assert_eq(fdtable_set(9, f), 0);
    struct shim_file *h = fdtable_hold(9); /* a reader's reference */
    cr_assert_eq(h, f);
    cr_assert_eq(f->refs, 2);
    int last = 0;
    struct shim_file *t = fdtable_take(9, &last); /* the close */
    cr_assert(last);
    cr_assert_eq(fdtable_unref(t), 1); /* still held: not freed */
    cr_assert_str_eq(h->rel, "held");
    cr_assert_null(fdtable_hold(9)); /* gone from the table */
    cr_assert_eq(fdtable_unref(h), 0);
}

Test(fdtable, dup_shares_one_record_until_the_last_reference)
{
    struct shim_file *f = record("shared");
    cr_assert_eq(fdtable_set(3, f), 0);
    cr_assert_eq(fdtable_set(1500, f), 0); /* another chunk */
    cr_assert_eq(f->refs, 2);
    int last = 1;
    struct shim_file *t = fdtable_take(3, &last);
    cr_assert_not(last, "another descriptor still refers to the file");
    cr_assert_eq(fdtable_unref(t), 1);
    cr_assert_eq(fdtable_get(1500), f);
    cr_assert_str_eq(fdtable_get(1500)->rel, "shared");
    cr_assert_eq(fdtable_unref(fdtable_take(1500, &last)), 0);
    cr_assert(last);
}

Test(fdtable, setting_over_an_entry_drops_the_old_reference)
{
    struct shim_file *a = record("a"), *b = record("b");
    cr_assert_eq(fdtable_set(5, a), 0);
    cr_assert_eq(fdtable_set(6, a), 0);
    cr_assert_eq(fdtable_set(5, b), 0); /* like dup2 onto 5 */
    cr_assert_eq(a->refs, 1);
    cr_assert_eq(fdtable_get(5), b);
    fdtable_unref(fdtable_take(5, NULL));
    fdtable_unref(fdtable_take(6, NULL));
}

Test(fdtable, next_walks_entries_in_order_across_chunks)
{
    int fds[] = { 0, 2, 1023, 1024, 70000 };
    for (size_t i = 0; i < sizeof fds / sizeof *fds; i++)
        cr_assert_eq(fdtable_set(fds[i], record("x")), 0);
    size_t i = 0;
    for (int fd = fdtable_next(0); fd >= 0; fd = fdtable_next(fd + 1), i++)
        cr_assert_eq(fd, fds[i]);
    cr_assert_eq(i, sizeof fds / sizeof *fds);
    for (i = 0; i < sizeof fds / sizeof *fds; i++)
        fdtable_unref(fdtable_take(fds[i], NULL));
    cr_assert_eq(fdtable_next(0), -1);
}

Test(fdtable, out_of_range_descriptors)
{
    struct shim_file *f = record("r");
    cr_assert_eq(fdtable_set(-1, f), -EBADF);
    cr_assert_eq(fdtable_set(FDTABLE_MAX, f), -EBADF);
    cr_assert_null(fdtable_get(-5));
    cr_assert_null(fdtable_get(FDTABLE_MAX + 10));
    free(f->rel);
    free(f);
}

/* Two threads take the last two descriptors of one file at once, many times over: exactly one
 * of them is told it took the last (the one that commits). */
#include <pthread.h>
struct race { int fd, last; pthread_barrier_t *go; };

static void *take_one(void *arg)
{
    struct race *r = arg;
    pthread_barrier_wait(r->go);
    struct shim_file *f = fdtable_take(r->fd, &r->last);
    fdtable_unref(f);
    return NULL;
}

Test(fdtable, exactly_one_of_two_racing_closes_is_the_last)
{
    for (int round = 0; round < 2000; round++) {
        struct shim_file *f = record("race");
        f->refs = 1; /* the test's own hold, so the record outlives both takes */
        cr_assert_eq(fdtable_set(40, f), 0);
        cr_assert_eq(fdtable_set(41, f), 0);
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 2);
        struct race a = { 40, 0, &go }, b = { 41, 0, &go };
        pthread_t ta, tb;
        pthread_create(&ta, NULL, take_one, &a);
        pthread_create(&tb, NULL, take_one, &b);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        pthread_barrier_destroy(&go);
        cr_assert_eq(a.last + b.last, 1, "round %d: %d + %d", round, a.last, b.last);
        cr_assert_eq(fdtable_unref(f), 0);
    }
}

Test(fdtable, hash_tells_changed_bytes_apart)
{
    char a[4096], b[4096];
    for (size_t i = 0; i < sizeof a; i++)
        a[i] = (char)(i * 31 + 7);
    memcpy(b, a, sizeof a);
    uint64_t h = fdtable_hash(a, sizeof a, FDTABLE_HASH_SEED);
    cr_assert_eq(h, fdtable_hash(b, sizeof b, FDTABLE_HASH_SEED));
    for (size_t pos = 0; pos < sizeof b; pos += 97) {
        b[pos] ^= 1;
        cr_assert_neq(h, fdtable_hash(b, sizeof b, FDTABLE_HASH_SEED), "flip at %zu", pos);
        b[pos] ^= 1;
    }
    /* same bytes, different length; the empty value */
    cr_assert_neq(fdtable_hash(a, 8, FDTABLE_HASH_SEED), fdtable_hash(a, 9, FDTABLE_HASH_SEED));
    cr_assert_neq(fdtable_hash(NULL, 0, FDTABLE_HASH_SEED), fdtable_hash("\0", 1, FDTABLE_HASH_SEED));
}

/* The kernel gave a recorded number out again (its descriptor was closed by a raw system
 * call): the record it replaced is marked lost, so its release reports it (shim/inode.c). */
Test(fdtable, a_number_given_out_again_marks_the_old_record_lost)
{
    struct shim_file *a = record("a"), *b = record("b");
    a->refs = 1; /* a caller's hold, so a outlives the replacement */
    cr_assert_eq(fdtable_set(12, a), 0);
    cr_assert_eq(fdtable_set(12, b), 0);
    cr_assert(a->lost);
    cr_assert_eq(a->fds, 0);
    cr_assert_not(b->lost);
    cr_assert_eq(fdtable_unref(a), 0);
    cr_assert_eq(fdtable_unref(fdtable_take(12, NULL)), 0);
}
