/* hygiene.c: keeps nats.c from disturbing the host program's process state (SPEC
 * "Processes").
 *
 *  - SIGPIPE: nats_Open sets it to SIG_IGN; guard_nats_open puts the program's disposition
 *    back. A write on a TLS connection from a caller's thread may raise SIGPIPE in that
 *    thread (plain sockets are written with MSG_NOSIGNAL): guard_enter blocks it,
 *    guard_leave consumes it with a zero-timeout sigtimedwait when it was not already
 *    pending (then it was the program's own), and restores the mask.
 *  - Thread masks: nats.c's threads inherit the creating thread's mask, so calls that may
 *    create threads (nats_Open, connect, subscribe) run with every signal blocked.
 *  - rand(): nats.c calls srand() and rand() (nats_Open, its NUID) while connecting, in the
 *    caller's thread. While a connect is in nats.c (GUARD_CONNECT) the global random()
 *    state is switched to a private buffer (initstate once, then setstate); the last one out
 *    switches back. A program thread calling rand() during that window draws from the
 *    private buffer: the price of keeping the program's sequence intact otherwise. Nothing
 *    else is swapped (subscriptions and requests draw nothing), so no background work of
 *    ours (the read cache's watcher) ever opens that window. nats.c's own threads are kept
 *    away from rand() by the options chosen in conn.c (no server-list randomisation, no
 *    reconnect jitter).
 * rand_mu guards rand_users, rand_saved, rand_ready; it is a leaf lock.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv/internal.h"

static pthread_mutex_t rand_mu = PTHREAD_MUTEX_INITIALIZER;
static int rand_users;
static int rand_ready;
static char *rand_saved;
static char rand_priv[256] __attribute__((aligned(8)));
static int nats_opened;         /* only the connect attempt's thread, one at a time */
static int pipe_possible = 1;   /* see guard_sigpipe_possible; written by the connect */

void guard_sigpipe_possible(int possible)
{
    __atomic_store_n(&pipe_possible, possible, __ATOMIC_RELEASE);
}

static void rand_swap_in(void)
{
    pthread_mutex_lock(&rand_mu);
    if (rand_users++ == 0) {
        if (!rand_ready) {
            rand_saved = initstate((unsigned)time(NULL), rand_priv, sizeof rand_priv);
            rand_ready = 1;
        } else {
            rand_saved = setstate(rand_priv);
        }
    }
    pthread_mutex_unlock(&rand_mu);
}

static void rand_swap_out(void)
{
    pthread_mutex_lock(&rand_mu);
    if (--rand_users == 0 && rand_saved)
        setstate(rand_saved);
    pthread_mutex_unlock(&rand_mu);
}

void guard_enter(kv_guard *g, int how)
{
    int block_all = (how & GUARD_THREADS) != 0;
    g->swapped = how == GUARD_CONNECT;
    g->masked = block_all || __atomic_load_n(&pipe_possible, __ATOMIC_ACQUIRE);
    if (!g->masked)
        return;
    sigset_t set, pending;
    if (block_all)
        sigfillset(&set);
    else {
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
    }
    pthread_sigmask(SIG_BLOCK, &set, &g->mask);
    sigemptyset(&pending);
    sigpending(&pending);
    g->pipe_was_pending = sigismember(&pending, SIGPIPE) == 1;
    if (g->swapped)
        rand_swap_in();
}

void guard_leave(kv_guard *g)
{
    if (g->swapped)
        rand_swap_out();
    if (!g->masked)
        return;
    sigset_t pending;
    sigemptyset(&pending);
    if (!g->pipe_was_pending && sigpending(&pending) == 0 &&
        sigismember(&pending, SIGPIPE) == 1) {
        sigset_t pipe;
        sigemptyset(&pipe);
        sigaddset(&pipe, SIGPIPE);
        const struct timespec zero = { 0, 0 };
        while (sigtimedwait(&pipe, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &g->mask, NULL);
}

int guard_nats_open(void)
{
    if (nats_opened)
        return 0;
    struct sigaction old;
    sigaction(SIGPIPE, NULL, &old);
    /* Spin count 0: nats.c's locks wait in the kernel instead of trying 2,000 times first.
     * The shim shares the container's CPUs (often a quota) with the program and, locally,
     * with nats-server; interleaved on 2 cores, 1 KiB read and blind-write cycles were
     * 1-3% faster so, read-modify-write the same. Only the library's first nats_Open sets
     * it: a program that opened nats.c itself keeps its own. */
    natsStatus s = nats_Open(0);
    sigaction(SIGPIPE, &old, NULL);
    if (s != NATS_OK)
        return kv_errmap(s, 0, NULL);
    nats_opened = 1;
    return 0;
}

/* The forked child has one thread, ours to reset: no other thread can hold rand_mu's
 * critical section in it (the shim does not fork while a thread is inside kv/). */
void guard_after_fork_child(void)
{
    pthread_mutex_init(&rand_mu, NULL);
    if (rand_users > 0 && rand_saved)
        setstate(rand_saved);
    rand_users = 0;
}
