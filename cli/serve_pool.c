/* serve_pool.c: the worker threads that run the sidecar's blocking kv calls.
 *
 * libmicrohttpd's thread (serve.c) accepts, parses and answers; a key request alone in
 * flight makes its kv call on that thread (serve_http.c), and any other request that needs
 * the store is suspended there and handed to this pool, whose worker makes the kv call, builds
 * the response and resumes the connection. Workers are started on demand (a job
 * arriving while none is idle starts one, up to SERVE_POOL_MAX) and then stay, waiting on a
 * condition variable: no thread is created or joined per connection, which is where the tail
 * of the old thread-per-connection model came from. A worker blocked in a slow kv call holds
 * up only its own request while fewer than SERVE_POOL_MAX are busy; beyond, jobs wait in FIFO
 * order. Workers inherit the creating thread's signal mask (everything serve.c blocks).
 *
 * Lock: mu guards every field below; never held while a job runs.
 */
#include "cli/serve.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "common/log.h"

#define SERVE_POOL_MAX 256

typedef struct job {
    struct job *next;
    void (*fn)(void *);
    void *arg;
} job;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t more = PTHREAD_COND_INITIALIZER;
static job *head, *tail;   /* mu: FIFO of jobs not yet taken */
static int nthreads, idle; /* mu */

static void *worker(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&mu);
    for (;;) {
        while (!head) {
            idle++;
            pthread_cond_wait(&more, &mu);
            idle--;
        }
        job *j = head;
        head = j->next;
        if (!head)
            tail = NULL;
        pthread_mutex_unlock(&mu);
        j->fn(j->arg);
        free(j);
        pthread_mutex_lock(&mu);
    }
    return NULL;
}

int serve_pool_submit(void (*fn)(void *), void *arg)
{
    job *j = malloc(sizeof *j);
    if (!j)
        return -ENOMEM;
    *j = (job){ NULL, fn, arg };
    pthread_mutex_lock(&mu);
    if (tail)
        tail->next = j;
    else
        head = j;
    tail = j;
    int start = idle == 0 && nthreads < SERVE_POOL_MAX;
    if (start)
        nthreads++;
    pthread_mutex_unlock(&mu);
    /* Signalled after the unlock: a worker woken while mu is still held sleeps again on
     * mu at once (measured: one more futex sleep and wake-up per request, ~40 us of CPU on
     * this paravirtualised machine, and one more chance to be scheduled late). */
    pthread_cond_signal(&more);
    if (start) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int e = pthread_create(&t, &attr, worker, NULL);
        pthread_attr_destroy(&attr);
        if (e != 0) {
            pthread_mutex_lock(&mu);
            nthreads--;
            int none = nthreads == 0;
            pthread_mutex_unlock(&mu);
            log_at(LOG_WARN, "serve: cannot start a worker thread (errno %d)%s", e,
                   none ? "; requests wait" : "");
        }
    }
    return 0;
}
