/* test_revmem.c: the revision memory (kv/revmem.c) after a commit whose outcome is unknown:
 * what the next commit expects. The sequences are the calls kv/ops.c makes around a commit
 * (read at open, remember at the commit of an open file, then settled / unknown). */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "kv/internal.h"

static const int mount_a; /* a mount handle: only its address matters */
#define M ((const void *)&mount_a)

/* A read of rev 5, then the open file's commit expecting it (remember pins it), whose reply
 * is lost (ETIMEDOUT): the write may have landed as rev 6. The thread's next commit without
 * a read must not expect 5 (a false EEXIST when it landed): nothing is remembered. */
Test(revmem, an_unknown_outcome_leaves_no_stale_expectation)
{
    revmem_init(0);
    revmem_read(M, "k", 5);
    revmem_read(M, "k", 5); /* read twice (the program looked at it before its cycle) */
    revmem_remember(M, "k", 5);
    uint64_t rev = 0;
    cr_assert_eq(revmem_recall(M, "k", &rev), 0);
    cr_assert_eq(rev, 5);
    revmem_unknown(M, "k", 5);
    cr_assert_eq(revmem_recall(M, "k", &rev), -ENOENT, "still expects %llu",
                 (unsigned long long)rev);
    /* the next read is the base again */
    revmem_read(M, "k", 7);
    cr_assert_eq(revmem_recall(M, "k", &rev), 0);
    cr_assert_eq(rev, 7);
}

static void *recall_in_thread(void *arg)
{
    uint64_t *rev = arg;
    if (revmem_recall(M, "k", rev) < 0)
        *rev = 0;
    return NULL;
}

static void *read_in_thread(void *arg)
{
    (void)arg;
    revmem_read(M, "k", 5);
    return NULL;
}

static uint64_t recall_elsewhere(void)
{
    uint64_t rev = 1;
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, recall_in_thread, &rev), 0);
    pthread_join(t, NULL);
    return rev;
}

/* The timed-out commit's read no longer stands for another thread's commit either (it would
 * expect 5 for up to the read's lifetime), but another thread's own outstanding read still
 * guards commits without a read of their own: never a blind put for that one. */
Test(revmem, an_unknown_outcome_retires_only_its_own_read)
{
    revmem_init(0);
    revmem_read(M, "k", 5);
    revmem_remember(M, "k", 5);
    revmem_unknown(M, "k", 5);
    cr_assert_eq(recall_elsewhere(), 0, "another thread still expects the timed-out read's");

    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, read_in_thread, NULL), 0);
    pthread_join(t, NULL);
    revmem_read(M, "k", 5);
    revmem_remember(M, "k", 5);
    revmem_unknown(M, "k", 5);
    cr_assert_eq(recall_elsewhere(), 5, "the other reader's read no longer guards");
}

/* ---- the sidecar's two modes (STATE_SIDECAR_CLIENTS): the calls one client makes that
 * reads k twice without writing, then read-modify-writes it twice ---- */

static uint64_t sidecar_cycle(uint64_t read_rev, uint64_t new_rev, int lands)
{
    uint64_t rev = 0;
    revmem_read(M, "k", read_rev);
    cr_assert_eq(revmem_recall(M, "k", &rev), 0);
    revmem_settled(M, "k", rev, lands ? new_rev : 0);
    return rev;
}

/* many: the reads of 5 nobody wrote after keep the next PUT expecting 5 (a 409 from the
 * server, at 6) until they expire: the README's cost of exactness among anonymous clients. */
Test(revmem_sidecar, many_keeps_expecting_a_read_nobody_wrote_after)
{
    revmem_init(KV_REVS_PER_PROCESS);
    revmem_read(M, "k", 5);
    revmem_read(M, "k", 5);
    cr_assert_eq(sidecar_cycle(5, 6, 1), 5);
    cr_assert_eq(sidecar_cycle(6, 0, 0), 5, "the leftover read of 5 is expected");
    cr_assert_eq(sidecar_cycle(6, 0, 0), 5, "and again on the retry (until 10 s)");
}

/* one: the last revision read or committed, nothing else; a conflict forgets it. */
Test(revmem_sidecar, one_expects_the_last_revision_read_or_committed)
{
    revmem_init(KV_REVS_PER_KEY);
    revmem_read(M, "k", 5);
    revmem_read(M, "k", 5);
    cr_assert_eq(sidecar_cycle(5, 6, 1), 5);
    cr_assert_eq(sidecar_cycle(6, 7, 1), 6);
    uint64_t rev = 0;
    cr_assert_eq(revmem_recall(M, "k", &rev), 0);
    cr_assert_eq(rev, 7, "a PUT without a read expects the last commit");
    revmem_settled(M, "k", 7, 0); /* another pod wrote meanwhile: 409 */
    cr_assert_eq(revmem_recall(M, "k", &rev), 0);
    cr_assert_eq(rev, 7, "a conflict keeps the refused revision (as Asya's ETag): the retry "
                 "without a read is refused too, never a blind put over the other pod's");
    revmem_read(M, "k", 9); /* the retry's read */
    cr_assert_eq(revmem_recall(M, "k", &rev), 0);
    cr_assert_eq(rev, 9, "a read replaces it");
}

/* ---- the bound (ASYA_STATE_REVMEM_MAX): eviction never makes a commit blind ---- */

#define BOUND 8
#define OTHERS 50

static void read_others(void)
{
    char key[32];
    for (int i = 0; i < OTHERS; i++) {
        snprintf(key, sizeof key, "other%d", i);
        revmem_read(M, key, KV_REV_ABSENT); /* distinct missing keys, as in issue 13 */
    }
}

static void *read_others_in_thread(void *arg)
{
    (void)arg;
    read_others();
    return NULL;
}

static void bounded_init(int per_process)
{
    char v[16];
    snprintf(v, sizeof v, "%d", BOUND);
    setenv("ASYA_STATE_REVMEM_MAX", v, 1);
    revmem_init(per_process);
}

/* Read K, evict it by reading many others, write K: a conflict (ESTALE, which ops.c answers
 * EEXIST without sending), not a blind put; the retry without a read is a put; a read
 * guards again; both layers stay within the bound. */
static void evicted_read_conflicts(int per_process)
{
    bounded_init(per_process);
    uint64_t rev = 0;
    cr_assert_eq(revmem_recall(M, "never", &rev), -ENOENT, "no eviction yet: a blind put");
    revmem_read(M, "k", 5);
    read_others();
    cr_assert_leq(revmem_count(0), BOUND, "process layer holds %zu", revmem_count(0));
    cr_assert_leq(revmem_count(1), BOUND, "thread layer holds %zu", revmem_count(1));
    cr_assert_eq(revmem_recall(M, "k", &rev), -ESTALE, "evicted read gave %llu",
                 (unsigned long long)rev);
    revmem_cleared(M, "k");
    cr_assert_eq(revmem_recall(M, "k", &rev), -ENOENT, "the retry is a put");
    revmem_read(M, "k", 7);
    cr_assert_eq(revmem_recall(M, "k", &rev), 0);
    cr_assert_eq(rev, 7);
    revmem_settled(M, "k", 7, 8);
    cr_assert_eq(revmem_recall(M, "k", &rev), 0);
    cr_assert_eq(rev, 8);
    cr_assert_leq(revmem_count(0), BOUND);
}

Test(revmem_bound, an_evicted_read_conflicts_in_a_thread)
{
    evicted_read_conflicts(0);
}

Test(revmem_bound, an_evicted_read_conflicts_in_the_sidecar)
{
    evicted_read_conflicts(1);
}

/* Read in one thread, write in another (an executor): the writer's own last commit must not
 * stand in for the reader's read once the process layer evicted it. */
Test(revmem_bound, an_evicted_read_of_another_thread_conflicts)
{
    bounded_init(0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, read_in_thread, NULL), 0); /* reads 5 */
    pthread_join(t, NULL);
    revmem_read(M, "k", 5);
    revmem_settled(M, "k", 5, 6); /* this thread's commit: 6 */
    uint64_t rev = 0;
    cr_assert_eq(revmem_recall(M, "k", &rev), 0);
    cr_assert_eq(rev, 5, "the other thread's read of 5 guards");
    cr_assert_eq(pthread_create(&t, NULL, read_others_in_thread, NULL), 0);
    pthread_join(t, NULL);
    cr_assert_leq(revmem_count(0), BOUND);
    cr_assert_eq(revmem_recall(M, "k", &rev), -ESTALE, "expected %llu after the eviction",
                 (unsigned long long)rev);
}

/* A thread whose own table never filled: only the process layer's evictions (a bit per key
 * hash) can refuse its blind puts, and only the few that collide. */
Test(revmem_bound, evictions_elsewhere_refuse_few_blind_puts)
{
    bounded_init(0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, read_others_in_thread, NULL), 0);
    pthread_join(t, NULL);
    uint64_t rev = 0;
    int conflicts = 0;
    char key[32];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "blind%d", i);
        conflicts += revmem_recall(M, key, &rev) == -ESTALE;
    }
    /* the process layer's map has OTHERS - BOUND bits of 1024 set: a few collisions */
    cr_assert_leq(conflicts, 10, "%d of 100 blind puts refused", conflicts);
}
