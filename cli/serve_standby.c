/* serve_standby.c: the standby acceptor. serve.c's libmicrohttpd daemon has one thread, and a
 * key request alone in flight makes its kv call on it (serve_http.c); while that call lasts,
 * nobody accepts. Normally that is one round trip to the server (a few hundred us, the
 * connections wait in the backlog); when the server is frozen or gone it is up to
 * NATS_TIMEOUT_MS. This thread looks every STANDBY_TICK_MS: once the MHD thread has been held
 * by one call for STANDBY_AFTER_MS, it accepts on the listening socket itself and gives each
 * connection to the spare daemon (a second libmicrohttpd daemon with one thread and no
 * listening socket), which answers /healthz at once and hands kv calls to the pool, until the
 * call returns. So a new connection waits at most about STANDBY_AFTER_MS + STANDBY_TICK_MS for
 * a thread, and in the common case nothing but the tick costs anything: a second MHD thread
 * on the listening socket would wake with every connection (libmicrohttpd 0.9.75 puts it in
 * each thread's epoll without EPOLLEXCLUSIVE), measured at about 70 us of CPU per GET.
 *
 * Shared: ctx->inline_since (atomic; set only by the MHD thread). Connections accepted here
 * race with the MHD thread's own accept once its call returns: each connection is accepted by
 * exactly one of them, and served by that one's daemon.
 */
#include "cli/serve.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

#define STANDBY_TICK_MS 50  /* how often the held thread is looked at */
#define STANDBY_AFTER_MS 50 /* a kv call on the MHD thread longer than this: accept here */

struct standby {
    struct serve_ctx *ctx;
    int fd;
    struct MHD_Daemon *spare;
};

/* 1 while the MHD thread has been in one kv call for STANDBY_AFTER_MS or more. */
static int held(struct serve_ctx *ctx)
{
    int64_t since = atomic_load(&ctx->inline_since);
    return since && serve_now_ns() - since >= (int64_t)STANDBY_AFTER_MS * 1000000;
}

static void *standby_main(void *arg)
{
    struct standby *s = arg;
    struct timespec tick = { 0, STANDBY_TICK_MS * 1000000L };
    unsigned taken = 0;
    while (!atomic_load(&s->ctx->stopping)) {
        nanosleep(&tick, NULL);
        while (!atomic_load(&s->ctx->stopping) && held(s->ctx)) {
            struct pollfd p = { .fd = s->fd, .events = POLLIN };
            if (poll(&p, 1, STANDBY_TICK_MS) <= 0 || !(p.revents & POLLIN))
                continue;
            struct sockaddr_un sa;
            socklen_t n = sizeof sa;
            int c = accept4(s->fd, (struct sockaddr *)&sa, &n, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (c < 0)
                continue; /* EAGAIN: the MHD thread was back first */
            if (atomic_load(&s->ctx->stopping)) {
                close(c); /* the spare may be stopped once serve_standby_stop returns */
                break;
            }
            /* on failure (the spare's connection limit) libmicrohttpd has closed c */
            if (MHD_add_connection(s->spare, c, (struct sockaddr *)&sa, n) == MHD_YES)
                taken++;
        }
        if (taken) {
            log_at(LOG_INFO, "serve: %u connection(s) accepted by the standby while a kv call "
                   "held the main thread", taken);
            taken = 0;
        }
    }
    return NULL;
}

static struct standby s; /* one per process */
static pthread_t thread;
static int started;

int serve_standby_start(struct serve_ctx *ctx, int listen_fd, struct MHD_Daemon *spare)
{
    s = (struct standby){ ctx, listen_fd, spare };
    int e = pthread_create(&thread, NULL, standby_main, &s);
    started = e == 0;
    return -e;
}

void serve_standby_stop(void)
{
    if (started) /* ctx->stopping is set: the thread ends within about STANDBY_TICK_MS */
        pthread_join(thread, NULL);
    started = 0;
}
