/* test_revmem.c: the revision memory (kv/revmem.c) after a commit whose outcome is unknown:
 * what the next commit expects. The sequences are the calls kv/ops.c makes around a commit
 * (read at open, remember at the commit of an open file, then settled / unknown). */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>

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
