/* serve.c: `asya-state serve`, the sidecar mode. Owns the process-level life of the
 * connector: reading its configuration, the one kv mount (revision memory per process,
 * STATE_READ_CACHE=watch or meta for the read cache), health (a probe at start, then one a
 * second for the sidecar's whole life: /healthz says 503 while the server or the bucket
 * does not answer), the Unix socket CONNECTOR_SOCKET (a stale one replaced, a live one left alone; mode 0666 or
 * CONNECTOR_SOCKET_MODE so the runtime container's user can connect), the libmicrohttpd
 * daemons and the clean stop on SIGTERM/SIGINT: stop accepting, let requests in flight finish
 * (new ones on open connections get 503), then close and remove the socket.
 * The requests themselves are serve_http.c's. Limits: at most SERVE_CONN_MAX connections
 * (the descriptor limit raised to its hard limit for them), closed after SERVE_IDLE_SECONDS
 * of silence; the header deadline and the body budget are serve_limits.c's.
 *
 * Threads: the main libmicrohttpd daemon, one epoll thread on the listening socket, accepts,
 * parses and answers. A key request (/keys/{key}, /meta) alone in flight and alone on that
 * thread makes its kv call right there (serve_http.c); every other request that calls kv (one
 * arriving meanwhile, a listing, /query) is suspended and run on serve_pool.c's workers, which
 * resume it. While the thread is held by a kv call for long (a frozen server: up to
 * NATS_TIMEOUT_MS), serve_standby.c accepts new connections for the spare daemon (one thread,
 * no listening socket), so they are answered meanwhile. Not two threads on the listening
 * socket: each would wake for every connection (libmicrohttpd 0.9.75 puts it in every thread's
 * epoll without EPOLLEXCLUSIVE; measured, about 70 us of CPU per GET at 8 clients). No thread
 * is created per connection (that was the old latency tail: a pthread_create, a new stack and
 * a join for every request of a runtime that opens a connection per request).
 *
 * Signals: SIGTERM, SIGINT and SIGHUP are blocked before any thread exists, so every thread
 * (MHD's, the pool's, nats.c's) inherits the mask and only the main thread's sigwait() sees
 * them. SIGPIPE is ignored: a client that hangs up must not kill the server.
 */
#include "cli/cli.h"
#include "cli/serve.h"
#include "shim/mounts.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

#define SERVE_MAX_BODY_DEFAULT (64u << 20) /* NATS's own ceiling on a message (max_payload) */
#define SERVE_BODY_BUDGET_DEFAULT (128u << 20) /* every body in memory at once */
#define SERVE_DRAIN_SECONDS 30             /* longest wait for requests in flight at stop */
#define SERVE_HEADER_SECONDS 10u           /* a request's headers must arrive within this */
#define SERVE_IDLE_SECONDS 30              /* a connection silent this long is closed */
#define SERVE_CONN_MAX 4096                /* connections at once (fewer if RLIMIT_NOFILE) */

static void serve_usage(FILE *out)
{
    fprintf(out,
            "usage: asya-state serve [--max-body BYTES] [--max-body-total BYTES]\n"
            "                        [--header-timeout SECONDS]\n"
            "\n"
            "Sidecar mode: answers Asya's state-proxy connector protocol (HTTP/1.1) on the Unix\n"
            "socket CONNECTOR_SOCKET, storing keys in the NATS JetStream KV bucket\n"
            "NATS_KV_BUCKET (under STATE_PREFIX) with compare-and-set.\n"
            "\n"
            "  --max-body BYTES        refuse PUT bodies over BYTES with 413 (default %u)\n"
            "  --max-body-total BYTES  bodies held in memory at once, all requests together;\n"
            "                          beyond, 503 with Retry-After (default %u)\n"
            "  --header-timeout SECONDS  a connection's request headers must arrive within\n"
            "                          this, else it is closed (default %u); its body\n"
            "                          within this plus 1 s per 64 KiB\n"
            "\n"
            "environment: CONNECTOR_SOCKET, NATS_URL, NATS_KV_BUCKET (required); STATE_PREFIX,\n"
            "NATS_CREDS_FILE, NATS_NKEY_SEED_FILE, NATS_TLS_CA, NATS_TLS_CERT, NATS_TLS_KEY,\n"
            "NATS_TIMEOUT_MS, STATE_READ_CACHE, STATE_SIDECAR_CLIENTS (one or many: which\n"
            "revision a PUT without If-Match expects; see the README), ASYA_STATE_LOG.\n"
            "SIGTERM or SIGINT stops it cleanly.\n",
            SERVE_MAX_BODY_DEFAULT, SERVE_BODY_BUDGET_DEFAULT, SERVE_HEADER_SECONDS);
}

/* A positive number argument no larger than max; 0 after a message when malformed. */
static unsigned long long serve_number(const char *opt, const char *s, unsigned long long max)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || end == s || v == 0 || v > max || s[0] == '-') {
        fprintf(stderr, "asya-state serve: bad %s '%s'\n", opt, s);
        return 0;
    }
    return v;
}

/* Parses the options into ctx and *header_s. CLI_OK, or CLI_USAGE after a message. */
static int serve_args(int argc, char **argv, struct serve_ctx *ctx, unsigned *header_s,
                      int *help)
{
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        unsigned long long v = 0;
        if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
            *help = 1;
        } else if (strcmp(o, "--max-body") == 0 && i + 1 < argc) {
            if (!(v = serve_number(o, argv[++i], SIZE_MAX / 2)))
                return CLI_USAGE;
            ctx->max_body = (size_t)v;
        } else if (strcmp(o, "--max-body-total") == 0 && i + 1 < argc) {
            if (!(v = serve_number(o, argv[++i], SIZE_MAX / 2)))
                return CLI_USAGE;
            ctx->body_budget = (size_t)v;
        } else if (strcmp(o, "--header-timeout") == 0 && i + 1 < argc) {
            if (!(v = serve_number(o, argv[++i], 3600)))
                return CLI_USAGE;
            *header_s = (unsigned)v;
        } else {
            fprintf(stderr, "asya-state serve: unknown argument '%s'\n", argv[i]);
            serve_usage(stderr);
            return CLI_USAGE;
        }
    }
    return CLI_OK;
}

/* Binds and listens on path, made mode (connecting to a Unix socket needs write
 * permission on it). An existing socket nobody answers on is stale and replaced; a
 * live one is -EADDRINUSE; anything else at path is -EEXIST (never deleted). */
static int serve_listen(const char *path, mode_t mode, int *fd_out)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct stat st;
    if (strlen(path) >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, strlen(path) + 1);

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            close(fd);
            return -EEXIST;
        }
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 || errno != ECONNREFUSED) {
            /* something answers (or might: a full backlog, no permission): not stale */
            close(fd);
            return -EADDRINUSE;
        }
        log_at(LOG_INFO, "serve: replacing the stale socket %s", path);
        if (unlink(path) != 0 && errno != ENOENT) {
            int e = -errno;
            close(fd);
            return e;
        }
        close(fd); /* a socket that tried to connect cannot bind: take a fresh one */
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || chmod(path, mode) != 0 ||
        listen(fd, SOMAXCONN) != 0) {
        int e = -errno;
        close(fd);
        unlink(path);
        return e;
    }
    *fd_out = fd;
    return 0;
}

/* libmicrohttpd's own messages (a client that hung up, a malformed request) are info. */
static void serve_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char buf[512];
    (void)cls;
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    log_at(LOG_INFO, "serve: libmicrohttpd: %s", buf);
}

/* One libmicrohttpd daemon with one thread (epoll), on the listening socket fd, or with none
 * (fd < 0: serve_standby.c's spare, given connections by MHD_add_connection). */
static struct MHD_Daemon *serve_daemon(struct serve_ctx *ctx, int fd, unsigned limit)
{
    return MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
            MHD_USE_ITC | MHD_USE_ERROR_LOG | (fd < 0 ? MHD_USE_NO_LISTEN_SOCKET : 0),
        0, NULL, NULL, serve_access, ctx,
        MHD_OPTION_EXTERNAL_LOGGER, serve_mhd_log, NULL, /* first, so it sees everything */
        MHD_OPTION_URI_LOG_CALLBACK, serve_req_begin, ctx,
        MHD_OPTION_NOTIFY_COMPLETED, serve_req_done, ctx,
        MHD_OPTION_NOTIFY_CONNECTION, serve_conn_notify, NULL,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)SERVE_IDLE_SECONDS,
        MHD_OPTION_CONNECTION_LIMIT, limit,
        /* last: the spare's list ends here (libmicrohttpd refuses a listening socket, even an
         * invalid one, with MHD_USE_NO_LISTEN_SOCKET) */
        fd < 0 ? MHD_OPTION_END : MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_END);
}

/* Waits, up to SERVE_DRAIN_SECONDS, until no request is in flight. */
static void serve_drain(struct serve_ctx *ctx)
{
    struct timespec tick = { 0, 10 * 1000 * 1000 };
    for (int i = 0; i < SERVE_DRAIN_SECONDS * 100; i++) {
        if (atomic_load(&ctx->in_flight) <= 0)
            return;
        nanosleep(&tick, NULL);
    }
    log_at(LOG_WARN, "serve: %ld request(s) still in flight after %ds, stopping anyway",
           atomic_load(&ctx->in_flight), SERVE_DRAIN_SECONDS);
}

/* Reads the environment, binds the kv mount. CLI_OK or CLI_FAIL after a message. */
static int serve_setup_kv(struct serve_ctx *ctx)
{
    const char *bucket = getenv("NATS_KV_BUCKET");
    const char *prefix = getenv("STATE_PREFIX");
    if (!bucket || !bucket[0]) {
        log_at(LOG_ERROR, "serve: NATS_KV_BUCKET is not set");
        return CLI_FAIL;
    }
    /* Which revision a PUT without If-Match expects. The sidecar cannot tell its clients
     * apart (a connection per request), so: "many" (the default) expects the oldest
     * revision still being read, as a concurrent client may have read it (no lost update,
     * but a read nobody writes after keeps PUTs of a newer revision refused for up to 10 s
     * once that revision is replaced); "one" expects the key's last revision read or
     * committed (exact for one sequential client, as Asya's runtime is; two clients that
     * read the same revision can both succeed). */
    const char *clients = getenv("STATE_SIDECAR_CLIENTS");
    unsigned revs = KV_REVS_PER_PROCESS;
    if (clients && strcmp(clients, "one") == 0) {
        revs = KV_REVS_PER_KEY;
    } else if (clients && clients[0] && strcmp(clients, "many") != 0) {
        log_at(LOG_ERROR, "serve: STATE_SIDECAR_CLIENTS='%s' is neither one nor many", clients);
        return CLI_FAIL;
    }
    ctx->ops = kv_backend();
    if (!ctx->ops || ctx->ops->abi != KV_ABI) {
        log_at(LOG_ERROR, "serve: the kv backend has the wrong ABI");
        return CLI_FAIL;
    }
    int r = ctx->ops->init(revs);
    if (r < 0)
        return CLI_FAIL; /* init named the variable */
    const char *cache = getenv("STATE_READ_CACHE");
    unsigned flags = cache ? mounts_read_mode(cache, strlen(cache)) : 0;
    if (cache && cache[0] && !flags)
        log_at(LOG_WARN, "serve: STATE_READ_CACHE=%s ignored (only watch or meta)", cache);
    r = ctx->ops->mount(bucket, prefix, flags, &ctx->mount);
    if (r < 0) {
        log_at(LOG_ERROR, "serve: cannot use bucket %s: %s", bucket, strerror(-r));
        return CLI_FAIL;
    }
    return CLI_OK;
}

#define SERVE_PROBE_KEY "asya-state-serve-probe" /* only ever read (its revision) */

/* One readiness probe: the key's revision, read fresh (connects and binds the bucket; a
 * missing key is the expected answer). 0 when the store answers; else the reason in why. */
static int serve_probe(struct serve_ctx *ctx, char *why, size_t n)
{
    uint64_t rev, max;
    int r = ctx->ops->version(ctx->mount, SERVE_PROBE_KEY, &rev);
    if (r == 0 || r == -ENOENT) {
        /* and the bucket's limits, read once per connection: they say whether a GET can be
         * a direct get answered straight to its thread (kv/lane.c); unread, GETs ask
         * kvStore_Get */
        ctx->ops->limit(ctx->mount, SERVE_PROBE_KEY, &max);
        return 0;
    }
    const char *bucket = getenv("NATS_KV_BUCKET");
    if (r == -ECONNREFUSED)
        snprintf(why, n, "cannot reach the NATS server (%s)", strerror(-r));
    else if (r == -ETIMEDOUT)
        snprintf(why, n, "the NATS server does not answer in time");
    else if (r == -EACCES)
        snprintf(why, n, "the NATS server refused the login");
    else
        snprintf(why, n, "cannot use bucket %s (%s: missing?)", bucket, strerror(-r));
    return r;
}

/* The backend's state for /healthz, probed once a second for as long as the sidecar runs:
 * ready while the server and the bucket answer; once a probe fails (the server gone or
 * frozen, the bucket deleted), 503 with the reason until one passes again. A probe is bounded
 * by NATS_TIMEOUT_MS, so a frozen server shows within that and a second. Each change of
 * state is logged once. */
static void *serve_health_main(void *arg)
{
    struct serve_ctx *ctx = arg;
    char why[sizeof ctx->not_ready];
    struct timespec sec = { 1, 0 };
    while (!atomic_load(&ctx->stopping)) {
        nanosleep(&sec, NULL);
        int ok = serve_probe(ctx, why, sizeof why) == 0;
        pthread_mutex_lock(&ctx->health_mu);
        int was = atomic_load(&ctx->ready);
        if (!ok)
            memcpy(ctx->not_ready, why, sizeof why);
        atomic_store(&ctx->ready, ok);
        pthread_mutex_unlock(&ctx->health_mu);
        if (ok && !was)
            log_at(LOG_WARN, "serve: ready: the NATS server and the bucket answer now");
        else if (!ok && was)
            log_at(LOG_WARN, "serve: not ready: %s; /healthz answers 503 until it answers",
                   why);
    }
    return NULL;
}

int serve_health(struct serve_ctx *ctx, char *why, size_t n)
{
    pthread_mutex_lock(&ctx->health_mu);
    int ok = atomic_load(&ctx->ready);
    if (!ok)
        snprintf(why, n, "%s", ctx->not_ready);
    pthread_mutex_unlock(&ctx->health_mu);
    return ok;
}

/* How many connections at once: SERVE_CONN_MAX, the descriptor limit raised to its hard
 * limit first; 64 descriptors are kept for the NATS connection, the log and the listener. */
static unsigned serve_conn_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1000;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= SERVE_CONN_MAX + 64)
        return SERVE_CONN_MAX;
    return rl.rlim_cur > 128 ? (unsigned)(rl.rlim_cur - 64) : 64;
}

/* CONNECTOR_SOCKET_MODE (octal) or 0666. -1 after a message when malformed. */
static int serve_socket_mode(mode_t *mode)
{
    const char *s = getenv("CONNECTOR_SOCKET_MODE");
    *mode = 0666;
    if (!s || !s[0])
        return 0;
    char *end;
    unsigned long v = strtoul(s, &end, 8);
    if (*end || v > 0777) {
        log_at(LOG_ERROR, "serve: CONNECTOR_SOCKET_MODE '%s' is not an octal mode", s);
        return -1;
    }
    *mode = (mode_t)v;
    return 0;
}

int cmd_serve(int argc, char **argv)
{
    static struct serve_ctx ctx = { .health_mu = PTHREAD_MUTEX_INITIALIZER }; /* outlives
                                                                  every thread */
    int help = 0, fd = -1, sig = 0;
    unsigned header_s = SERVE_HEADER_SECONDS;
    ctx.max_body = SERVE_MAX_BODY_DEFAULT;
    ctx.body_budget = SERVE_BODY_BUDGET_DEFAULT;
    int rc = serve_args(argc, argv, &ctx, &header_s, &help);
    if (rc != CLI_OK || help) {
        if (help)
            serve_usage(stdout);
        return rc;
    }
    const char *path = getenv("CONNECTOR_SOCKET");
    if (!path || !path[0]) {
        log_at(LOG_ERROR, "serve: CONNECTOR_SOCKET is not set");
        return CLI_FAIL;
    }

    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    mode_t mode;
    if (serve_socket_mode(&mode) < 0 || serve_setup_kv(&ctx) != CLI_OK)
        return CLI_FAIL;
    pthread_t health;
    if (serve_probe(&ctx, ctx.not_ready, sizeof ctx.not_ready) == 0)
        atomic_store(&ctx.ready, 1);
    else
        log_at(LOG_ERROR, "serve: not ready: %s; /healthz answers 503 until it can, retrying",
               ctx.not_ready);
    if (pthread_create(&health, NULL, serve_health_main, &ctx) == 0)
        pthread_detach(health);
    else
        log_at(LOG_WARN, "serve: /healthz keeps the state found at start (no probe thread)");
    int r = serve_listen(path, mode, &fd);
    if (r < 0) {
        log_at(LOG_ERROR, "serve: cannot listen on %s: %s", path,
               r == -EEXIST ? "a file that is not a socket is there" : strerror(-r));
        return CLI_FAIL;
    }

    if (ctx.body_budget < ctx.max_body) {
        log_at(LOG_WARN, "serve: --max-body-total %zu is below --max-body %zu: raised to it",
               ctx.body_budget, ctx.max_body);
        ctx.body_budget = ctx.max_body;
    }
    unsigned limit = serve_conn_limit();
    if (serve_limits_start(&ctx, header_s) < 0)
        log_at(LOG_WARN, "serve: no header deadline (cannot start its thread)");
    /* The spare first (ctx.spare is read by the main daemon's thread), then the main one;
     * they share the connection limit, 1/64 of it for the spare (64 of 4,096). */
    unsigned spare_limit = limit / 64 > 4 ? limit / 64 : 4;
    ctx.spare = serve_daemon(&ctx, -1, spare_limit);
    struct MHD_Daemon *d = ctx.spare ? serve_daemon(&ctx, fd, limit - spare_limit) : NULL;
    if (!d) {
        log_at(LOG_ERROR, "serve: libmicrohttpd did not start on %s", path);
        if (ctx.spare)
            MHD_stop_daemon(ctx.spare);
        close(fd);
        unlink(path);
        return CLI_FAIL;
    }
    if (serve_standby_start(&ctx, fd, ctx.spare) < 0)
        log_at(LOG_WARN, "serve: no standby acceptor (cannot start its thread): a kv call "
               "held by the server holds new connections with it");
    log_at(LOG_INFO, "serve: listening on %s", path);

    while (sigwait(&stop, &sig) != 0 || (sig != SIGTERM && sig != SIGINT))
        ; /* SIGHUP: nothing to reload */

    log_at(LOG_INFO, "serve: signal %d, finishing requests in flight", sig);
    atomic_store(&ctx.stopping, 1);
    MHD_socket lfd = MHD_quiesce_daemon(d);
    unlink(path); /* new clients fail at once instead of waiting in the backlog */
    serve_drain(&ctx);
    serve_standby_stop(); /* it may give the spare a connection until then */
    MHD_stop_daemon(d);
    MHD_stop_daemon(ctx.spare);
    if (lfd != MHD_INVALID_SOCKET)
        close(lfd);
    log_at(LOG_INFO, "serve: stopped");
    return CLI_OK;
}
