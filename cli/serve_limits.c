/* serve_limits.c: the sidecar's resource limits, so that no client, slow or greedy, holds the
 * others out (issue 13 case 9). serve.c sets libmicrohttpd's own limits (connections, idle
 * timeout); this file adds the two it lacks:
 *
 *  - a header deadline: a connection must deliver a request's headers within header_s of
 *    its start (or of its previous answer, on a kept-alive connection), else it is shut down.
 *    An idle timeout alone is reset by every byte: a client dripping a byte every few seconds
 *    (slowloris) would keep its connection, and a thousand of them every slot, forever.
 *    Then a body rate: the body must follow within header_s, each byte buying
 *    1/BODY_MIN_RATE s more (64 KiB/s: a 64 MiB body has 17 minutes), so a body dripped a
 *    byte at a time holds its connection, and its share of the body budget, for header_s,
 *    not for ever. No deadline while a complete request is served.
 *    A reaper thread looks once a second and shutdown()s late connections; libmicrohttpd
 *    then sees the end of the stream and closes them on its own thread.
 *  - a body budget: all request bodies held in memory at once stay under one total. A
 *    request whose body would pass it is answered 503 with Retry-After (its body read and
 *    dropped, never stored), so twenty large PUTs at once cannot take the process's memory.
 *
 * Lock: mu guards the connection list (every field of struct serve_conn). The reaper holds
 * it while it calls shutdown(); the CLOSED notification takes it before libmicrohttpd closes
 * the descriptor, so the reaper never shuts down a descriptor number already reused.
 * The notifications and serve_conn_* run on both daemons' threads at once (each for the
 * connections it owns): every access to the list or to a struct serve_conn takes mu, and
 * nothing else is shared between them. The body budget is an atomic counter (no lock).
 */
#include "cli/serve.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "common/log.h"

struct serve_conn {
    struct serve_conn *prev, *next; /* mu */
    int fd;                         /* the connection's socket, MHD's */
    int64_t deadline;               /* mu: headers or body due by then (monotonic ns); 0: none */
    int in_body;                    /* mu: the deadline is the body's */
    int shut;                       /* mu: shut down by the reaper */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct serve_conn *conns; /* mu */
static int64_t header_ns;        /* set once before the daemon starts */

int64_t serve_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static struct serve_conn *conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *i =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return i ? i->socket_context : NULL;
}

static void set_deadline(struct MHD_Connection *c, int64_t when)
{
    struct serve_conn *sc = conn_of(c);
    if (!sc)
        return;
    pthread_mutex_lock(&mu);
    sc->deadline = when;
    pthread_mutex_unlock(&mu);
}

void serve_conn_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                       enum MHD_ConnectionNotificationCode toe)
{
    (void)cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *i =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct serve_conn *sc = calloc(1, sizeof *sc);
        if (!sc || !i) {
            free(sc); /* out of memory: this connection has no header deadline */
            return;
        }
        sc->fd = i->connect_fd;
        sc->deadline = serve_now_ns() + header_ns;
        pthread_mutex_lock(&mu);
        sc->next = conns;
        if (conns)
            conns->prev = sc;
        conns = sc;
        pthread_mutex_unlock(&mu);
        *socket_context = sc;
        return;
    }
    struct serve_conn *sc = *socket_context;
    if (!sc)
        return;
    pthread_mutex_lock(&mu);
    if (sc->prev)
        sc->prev->next = sc->next;
    else
        conns = sc->next;
    if (sc->next)
        sc->next->prev = sc->prev;
    pthread_mutex_unlock(&mu);
    free(sc);
    *socket_context = NULL;
}

#define BODY_MIN_RATE (64 << 10) /* bytes per second a body must average, after header_s */

void serve_conn_headers_done(struct MHD_Connection *c)
{
    set_deadline(c, serve_now_ns() + header_ns);
    struct serve_conn *sc = conn_of(c);
    if (sc) {
        pthread_mutex_lock(&mu);
        sc->in_body = 1;
        pthread_mutex_unlock(&mu);
    }
}

void serve_conn_body(struct MHD_Connection *c, size_t n)
{
    struct serve_conn *sc = conn_of(c);
    if (!sc)
        return;
    pthread_mutex_lock(&mu);
    if (sc->deadline)
        sc->deadline += (int64_t)(n * (1000000000.0 / BODY_MIN_RATE));
    pthread_mutex_unlock(&mu);
}

void serve_conn_served(struct MHD_Connection *c)
{
    set_deadline(c, 0);
}

void serve_conn_answered(struct MHD_Connection *c)
{
    set_deadline(c, serve_now_ns() + header_ns); /* the next request on a kept-alive connection */
    struct serve_conn *sc = conn_of(c);
    if (sc) {
        pthread_mutex_lock(&mu);
        sc->in_body = 0;
        pthread_mutex_unlock(&mu);
    }
}

static void *reaper_main(void *arg)
{
    struct serve_ctx *ctx = arg;
    struct timespec tick = { 1, 0 };
    while (!atomic_load(&ctx->stopping)) {
        nanosleep(&tick, NULL);
        int64_t now = serve_now_ns();
        unsigned n = 0, nb = 0;
        pthread_mutex_lock(&mu);
        for (struct serve_conn *sc = conns; sc; sc = sc->next)
            if (sc->deadline && now > sc->deadline && !sc->shut) {
                shutdown(sc->fd, SHUT_RDWR);
                sc->shut = 1;
                if (sc->in_body)
                    nb++;
                else
                    n++;
            }
        pthread_mutex_unlock(&mu);
        if (n)
            log_at(LOG_INFO, "serve: closed %u connection(s) that sent no complete request "
                   "headers within %llds", n, (long long)(header_ns / 1000000000));
        if (nb)
            log_at(LOG_INFO, "serve: closed %u connection(s) whose request body came slower "
                   "than %d KiB/s after %llds", nb, BODY_MIN_RATE >> 10,
                   (long long)(header_ns / 1000000000));
    }
    return NULL;
}

int serve_limits_start(struct serve_ctx *ctx, unsigned header_seconds)
{
    pthread_t t;
    header_ns = (int64_t)header_seconds * 1000000000;
    int e = pthread_create(&t, NULL, reaper_main, ctx);
    if (e)
        return -e;
    pthread_detach(t);
    return 0;
}

int serve_budget_take(struct serve_ctx *ctx, size_t n)
{
    size_t used = atomic_load(&ctx->body_used);
    do {
        if (n > ctx->body_budget || used > ctx->body_budget - n)
            return -ENOBUFS;
    } while (!atomic_compare_exchange_weak(&ctx->body_used, &used, used + n));
    return 0;
}

void serve_budget_give(struct serve_ctx *ctx, size_t n)
{
    atomic_fetch_sub(&ctx->body_used, n);
}
