/* conn.c: the process's one NATS connection (its buckets: bucket.c).
 *
 * Made lazily by the first operation. conn_mu guards `cur`, every kv_conn's refs/detached
 * and the connect attempt; it is never held across a network exchange.
 * One attempt at a time (a second connection would be a leak, and nothing useful can run
 * before the first one exists): a helper thread (dial.c: every signal blocked, inherited by
 * nats.c's threads) connects, while every caller that needs the connection waits for the
 * attempt's outcome on conn_cv with its own signal mask, at most NATS_TIMEOUT_MS + a margin
 * from the attempt's start (-ETIMEDOUT then), so concurrent first operations fail together
 * after one timeout and SIGTERM keeps its default action. An attempt still under way at its
 * deadline gets a supervisor thread (started then by the first caller, who waits a margin
 * longer) that cuts nats.c's endless wait (dial_unstick), so it ends even after its callers
 * gave up; a connection it makes late becomes `cur` for the next caller. Binding a bucket and every
 * request run without conn_mu; a kv_conn is kept alive by its refcount while in use.
 *
 * nats.c never reconnects by itself (its reconnect thread has the connect's endless wait,
 * unsupervised and holding the connection's lock: see make_options): a lost connection
 * (server stopped or restarted, or a fatal server error such as a subject too long) is
 * closed, and the next conn_acquire detaches it and connects afresh through the supervised
 * attempt below; the old one is destroyed by its last user. The generation counter
 * (conn_gen) counts disconnects and new connections so the read cache (cache.c) and watch
 * know their watcher is gone.
 *
 * After fork the child forgets `cur` without touching it (no destroy, no join: nats.c's
 * threads do not exist in the child) and connects again when it needs to. The NATS socket
 * is made close-on-exec after every connect (nats.c 3.4.1 does not).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "kv/internal.h"

static pthread_mutex_t conn_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t conn_cv = PTHREAD_COND_INITIALIZER; /* an attempt ended (CLOCK_REALTIME) */
static kv_conn *cur;            /* guarded by conn_mu */
static uint64_t conn_gen;       /* atomic (__atomic builtins): see conn_generation */

static pthread_mutex_t id_mu = PTHREAD_MUTEX_INITIALIZER;
static char id_prefix[40];      /* guarded by id_mu; "" until first use and after fork */
static uint64_t id_count;       /* guarded by id_mu */

/* ---- message ids ---- */

void conn_msgid(char *out, size_t outsz)
{
    pthread_mutex_lock(&id_mu);
    if (!id_prefix[0]) {
        uint64_t rnd[2] = { 0, 0 };
        if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
            rnd[0] ^= (uint64_t)(uintptr_t)&rnd ^ (uint64_t)getpid() << 32;
        snprintf(id_prefix, sizeof id_prefix, "asya-%016llx%08llx-%d",
                 (unsigned long long)rnd[0], (unsigned long long)(rnd[1] & 0xffffffffu),
                 (int)getpid());
    }
    uint64_t n = ++id_count;
    snprintf(out, outsz, "%s-%llu", id_prefix, (unsigned long long)n);
    pthread_mutex_unlock(&id_mu);
}

/* ---- close-on-exec for the NATS socket ---- */

/* nats.c does not expose its descriptor: find the socket whose local address is the
 * connection's and set FD_CLOEXEC on it. Runs in the connecting thread after a connect.
 * Best effort: a failure leaves it inheritable. */
static void socket_cloexec(natsConnection *nc)
{
    char *ip = NULL;
    int port = 0;
    if (natsConnection_GetLocalIPAndPort(nc, &ip, &port) != NATS_OK) {
        free(ip);
        return;
    }
    free(ip);
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        int fd = atoi(de->d_name);
        if (de->d_name[0] < '0' || de->d_name[0] > '9' || fd == dirfd(d))
            continue;
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
            continue;
        /* getsockname returned 0, so it filled ss:
         * NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult) */
        int p = ss.ss_family == AF_INET    ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                : ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                           : -1;
        if (p == port) {
            int fl = fcntl(fd, F_GETFD);
            if (fl >= 0)
                fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
        }
    }
    closedir(d);
}

static void bump_generation(void)
{
    __atomic_add_fetch(&conn_gen, 1, __ATOMIC_ACQ_REL);
}

uint64_t conn_generation(void)
{
    return __atomic_load_n(&conn_gen, __ATOMIC_ACQUIRE);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    (void)closure;
    bump_generation();
}

/* ---- connect ---- */

/* A configured file nats.c refused (TLS material, creds) is configuration: reported once,
 * then every connect fails with -EIO quietly. Only the attempt's thread (one at a time)
 * reads and writes it. */
static int auth_refused;

static int set_auth(natsOptions *o, const kv_config *cfg, char *inbox, size_t inboxsz)
{
    natsStatus s = NATS_OK;
    const char *var = NULL;
    if (cfg->creds_file) {
        var = "NATS_CREDS_FILE";
        s = natsOptions_SetUserCredentialsFromFiles(o, cfg->creds_file, NULL);
    }
    if (s == NATS_OK && cfg->user) {
        var = "NATS_USER / NATS_PASSWORD";
        s = natsOptions_SetUserInfo(o, cfg->user, cfg->password ? cfg->password : "");
    }
    if (s == NATS_OK && cfg->token) {
        var = "NATS_TOKEN";
        s = natsOptions_SetToken(o, cfg->token);
    }
    if (s == NATS_OK && cfg->seed_file) {
        char pub[64];
        int r = kv_nkey_public(cfg->seed_file, pub, sizeof pub);
        if (r < 0)
            return r;
        var = "NATS_NKEY_SEED_FILE";
        s = natsOptions_SetNKeyFromSeed(o, pub, cfg->seed_file);
    }
    /* nats.c 3.4.1 takes a tls:// URL as plain nats:// unless told: without this, a
     * tls:// URL and no NATS_TLS_CA connected in clear text to a server that allows it. */
    int tls_url = 0;
    for (int i = 0; i < cfg->nurls; i++)
        tls_url |= strncmp(cfg->urls[i], "tls://", 6) == 0 ||
                   strncmp(cfg->urls[i], "wss://", 6) == 0;
    /* Inboxes of this process's own: a forked child inherits nats.c's NUID state, so without
     * this its reply subjects would repeat its parent's. */
    uint64_t rnd[2] = { 0, 0 };
    if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        rnd[0] ^= (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)&rnd;
    snprintf(inbox, inboxsz, "_INBOX.asya%016llx%016llx", (unsigned long long)rnd[0],
             (unsigned long long)rnd[1]);
    if (s == NATS_OK)
        s = natsOptions_SetCustomInboxPrefix(o, inbox);
    int secure = cfg->tls_ca || cfg->tls_cert || tls_url;
    guard_sigpipe_possible(secure);
    if (s == NATS_OK && secure) {
        var = "NATS_TLS_CA";
        s = natsOptions_SetSecure(o, true);
    }
    if (s == NATS_OK && cfg->tls_ca) {
        var = "NATS_TLS_CA";
        s = natsOptions_LoadCATrustedCertificates(o, cfg->tls_ca);
    }
    if (s == NATS_OK && cfg->tls_cert) {
        var = "NATS_TLS_CERT / NATS_TLS_KEY";
        s = natsOptions_LoadCertificatesChain(o, cfg->tls_cert, cfg->tls_key);
    }
    if (s != NATS_OK) {
        const char *why = NULL;
        kv_errmap(s, 0, &why);
        log_at(LOG_ERROR, "configuration: %s could not be loaded: %s", var, why);
        return -EIO;
    }
    return 0;
}

static int make_options(natsOptions **out, const kv_config *cfg, char *inbox, size_t inboxsz)
{
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetServers(o, cfg->urls, cfg->nurls);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(o, cfg->timeout_ms);
    /* No rand() from nats.c's own threads: no shuffling. */
    if (s == NATS_OK)
        s = natsOptions_SetNoRandomize(o, true);
    /* No reconnect inside nats.c: its reconnect thread reads the handshake with the same
     * endless _readProto as the first connect, unsupervised and holding the connection's
     * lock (a server that sends INFO and then nothing hung every operation, spun a CPU and
     * grew memory). A lost connection is closed instead, and the next operation makes a new,
     * supervised one (conn_acquire). */
    if (s == NATS_OK)
        s = natsOptions_SetAllowReconnect(o, false);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(o, on_disconnected, NULL);
    /* Every publish written by the publishing thread at once: a lane's request (lane.c) is
     * a plain publish, which nats.c would otherwise leave to its flusher thread (a wake-up
     * and up to a millisecond); its own requests flush at once anyway. */
    if (s == NATS_OK)
        s = natsOptions_SetSendAsap(o, true);
    if (s != NATS_OK) {
        natsOptions_Destroy(o);
        return kv_errmap(s, 0, NULL);
    }
    int r = set_auth(o, cfg, inbox, inboxsz);
    if (r < 0) {
        natsOptions_Destroy(o);
        return r;
    }
    *out = o;
    return 0;
}

/* EMFILE or ENFILE when no socket can be made right now, else 0. */
static int socket_unavailable(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int e = fd < 0 ? errno : 0;
    if (fd >= 0)
        close(fd);
    return e == EMFILE || e == ENFILE ? e : 0;
}

/* nats.c starts the thread of its reply subscription at the first request: made in the
 * connecting thread (every signal blocked) so that later requests need not block the
 * caller's signals. When no bucket binding did it (connect_nats), by a request to a subject
 * of this connection's own inbox that nobody answers (1 ms, its outcome ignored: a
 * permission violation or no responders alike). */
static void warm_up(natsConnection *nc)
{
    char subj[64];
    natsInbox *inbox = NULL;
    natsMsg *reply = NULL;
    if (natsInbox_Create(&inbox) != NATS_OK)
        return;
    snprintf(subj, sizeof subj, "%s.warm", (const char *)inbox);
    natsInbox_Destroy(inbox);
    natsConnection_RequestString(&reply, nc, subj, "", 1);
    natsMsg_Destroy(reply);
}

/* The connect itself, in the attempt's thread (one at a time). A failure is logged unless
 * *cut is set (atomic): then the supervisor cut the socket, and says so. */
static int connect_nats(kv_conn **out, const char *key, const char *bucket, const int *cut)
{
    const kv_config *cfg;
    int r = kv_config_get(&cfg);
    if (r < 0) {
        log_at(LOG_WARN, "%s: not sent: the NATS configuration is invalid (see above)", key);
        return -EIO;
    }
    kv_guard g;
    guard_enter(&g, GUARD_CONNECT);
    natsOptions *o = NULL;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsStatus s = NATS_OK;
    r = guard_nats_open();
    if (r == 0 && auth_refused) {
        log_at(LOG_INFO, "%s: not sent: the NATS configuration was refused (see above)", key);
        r = -EIO;
    }
    char inbox[sizeof ((kv_conn *)0)->inbox];
    if (r == 0 && (r = make_options(&o, cfg, inbox, sizeof inbox)) == -EIO)
        auth_refused = 1;
    if (r == 0) {
        s = natsConnection_Connect(&nc, o);
        if (s == NATS_OK) {
            jsOptions jo;
            jsOptions_Init(&jo);
            jo.Wait = cfg->timeout_ms;
            s = natsConnection_JetStream(&js, nc, &jo);
        }
        if (s != NATS_OK) {
            const char *why = NULL;
            r = kv_errmap(s, 0, &why);
            if (r == -ENOENT || r == -EEXIST)
                r = -EIO;
            /* nats.c reports a socket() that failed for want of descriptors as "no server";
             * a local disk would say EMFILE or ENFILE: if no socket can be made now, say so. */
            int e = socket_unavailable();
            if (e) {
                r = -e;
                why = e == EMFILE ? "out of descriptors (EMFILE: RLIMIT_NOFILE reached)"
                                  : "out of descriptors (ENFILE: the system's table is full)";
            }
            /* key is "" for a mount's root (a listing): then the server alone is named */
            if (!__atomic_load_n(cut, __ATOMIC_ACQUIRE))
                log_at(LOG_ERROR, "%s%scannot connect to NATS at %s: %s", key, *key ? ": " : "",
                   cfg->url_safe, why);
        }
    }
    if (r == 0)
        socket_cloexec(nc);
    if (r < 0) {
        jsCtx_Destroy(js);
        natsConnection_Destroy(nc);
    }
    natsOptions_Destroy(o);
    guard_leave(&g);
    if (r < 0)
        return r;
    kv_conn *c = calloc(1, sizeof *c);
    if (!c) {
        jsCtx_Destroy(js);
        natsConnection_Destroy(nc);
        return -ENOMEM;
    }
    c->nc = nc;
    c->js = js;
    pthread_mutex_init(&c->lane_mu, NULL);
    memcpy(c->inbox, inbox, sizeof c->inbox);
    /* The first request starts nats.c's reply thread, which must start here, with every
     * signal blocked: the first caller's bucket is bound (a request the caller needs next
     * anyway: warm_up's round trip cost 0.6-0.85 ms of every first touch), or, without a
     * bucket or when its binding failed (it may have sent nothing), warm_up. */
    guard_enter(&g, GUARD_CONNECT);
    if (!*bucket || conn_bucket_first(c, bucket) < 0)
        warm_up(nc);
    guard_leave(&g);
    c->max_payload = natsConnection_GetMaxPayload(nc);
    *out = c;
    bump_generation();
    log_at(LOG_INFO, "connected to NATS at %s", cfg->url_safe);
    return 0;
}

static void conn_free(kv_conn *c)
{
    kv_guard g;
    guard_enter(&g, GUARD_THREADS);
    bucket_free_all(c->buckets);
    lane_free_all(c);
    pthread_mutex_destroy(&c->lane_mu);
    jsCtx_Destroy(c->js);
    natsConnection_Destroy(c->nc);
    guard_leave(&g);
    free(c);
}

/* ---- the connect attempt ---- */

/* The margin a caller waits beyond NATS_TIMEOUT_MS for nats.c to report its own timeout. */
#define CONNECT_MARGIN_MS 250
/* How often the supervisor looks for nats.c's spin once the attempt is past its deadline. */
#define UNSTICK_EVERY_MS 100

typedef struct attempt {
    unsigned refs;          /* guarded by conn_mu: the supervisor, the connecting thread and
                             * each waiting caller */
    int done, r;            /* guarded by conn_mu: the outcome, r 0 or -errno */
    pid_t tid;              /* guarded by conn_mu: the connecting thread, 0 until it runs */
    struct timespec start;  /* CLOCK_REALTIME (conn_cv's clock); set before it is shared */
    int64_t timeout_ms;
    char key[256];          /* the first caller's key, for the log */
    char bucket[256];       /* the first caller's bucket ("": none), bound by the attempt */
    dial_sockets before;    /* written by the connecting thread before tid is published */
    int cut;                /* atomic: the supervisor is cutting the spin (the outcome is then
                             * -ETIMEDOUT, whatever nats.c says of the closed socket) */
    int hold;               /* the first caller holds its log lines (the CLI): so do the
                             * attempt's threads, whose lines are about that caller's open */
    int supervised;         /* guarded by conn_mu: the supervisor was started */
} attempt;
static attempt *inflight;       /* guarded by conn_mu: the attempt under way, or NULL */

static void attempt_put_locked(attempt *a, unsigned n)
{
    a->refs -= n;
    if (a->refs == 0)
        free(a);
}

static struct timespec ts_after(struct timespec t, int64_t ms)
{
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

static int ts_passed(struct timespec t)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return now.tv_sec > t.tv_sec || (now.tv_sec == t.tv_sec && now.tv_nsec >= t.tv_nsec);
}

static void *attempt_connect(void *arg)
{
    attempt *a = arg;
    if (a->hold)
        log_hold();
    dial_baseline(&a->before);
    pthread_mutex_lock(&conn_mu);
    a->tid = dial_gettid();
    pthread_mutex_unlock(&conn_mu);
    kv_conn *c = NULL;
    int r = connect_nats(&c, a->key, a->bucket, &a->cut);
    if (r < 0 && __atomic_load_n(&a->cut, __ATOMIC_ACQUIRE))
        r = -ETIMEDOUT;
    kv_conn *extra = NULL;
    pthread_mutex_lock(&conn_mu);
    if (inflight == a) {        /* a fork in between made a new world: then it is not ours */
        inflight = NULL;
        if (r == 0 && !cur)
            cur = c;
        else
            extra = c;          /* cannot happen (one attempt at a time): never leak it */
    } else {
        extra = c;
    }
    a->r = r;
    a->done = 1;
    a->tid = 0;
    pthread_cond_broadcast(&conn_cv);
    attempt_put_locked(a, 1);
    pthread_mutex_unlock(&conn_mu);
    if (extra)
        conn_free(extra);
    return NULL;
}

/* Past the attempt's deadline, cuts nats.c's spin: started only then, by a caller still
 * waiting (the first caller waits until the deadline and a margin, so one always is). */
static void *attempt_supervise(void *arg)
{
    attempt *a = arg;
    if (a->hold)
        log_hold();
    struct timespec deadline = ts_after(a->start, a->timeout_ms);
    pthread_mutex_lock(&conn_mu);
    while (!a->done) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        struct timespec next = ts_after(now, UNSTICK_EVERY_MS);
        pthread_cond_timedwait(&conn_cv, &conn_mu, &next);
        pid_t tid = a->tid;
        if (!a->done && tid && ts_passed(deadline)) {
            pthread_mutex_unlock(&conn_mu);
            const kv_config *cfg;
            __atomic_store_n(&a->cut, 1, __ATOMIC_RELEASE);
            if (kv_config_get(&cfg) == 0 && dial_unstick(tid, &a->before, cfg->urls, cfg->nurls))
                log_at(LOG_ERROR, "%s%scannot connect to NATS at %s: it sent INFO, then nothing "
                       "for over %lld ms (connection cut)", a->key, *a->key ? ": " : "",
                       cfg->url_safe, (long long)a->timeout_ms);
            else
                __atomic_store_n(&a->cut, 0, __ATOMIC_RELEASE);
            pthread_mutex_lock(&conn_mu);
        }
    }
    attempt_put_locked(a, 1);
    pthread_mutex_unlock(&conn_mu);
    return NULL;
}

/* Called with conn_mu held and no `cur`: joins the attempt under way or starts one, and
 * waits for its outcome until its deadline (conn_mu released while waiting). */
static int connect_wait_locked(const char *key, const char *bucket)
{
    const kv_config *cfg;
    if (kv_config_get(&cfg) < 0) {
        log_at(LOG_WARN, "%s: not sent: the NATS configuration is invalid (see above)", key);
        return -EIO;
    }
    attempt *a = inflight;
    if (!a) {
        a = calloc(1, sizeof *a);
        if (!a)
            return -ENOMEM;
        a->refs = 1;            /* the connecting thread's */
        a->timeout_ms = cfg->timeout_ms;
        a->hold = log_holding();
        snprintf(a->key, sizeof a->key, "%s", key);
        snprintf(a->bucket, sizeof a->bucket, "%s", bucket);
        clock_gettime(CLOCK_REALTIME, &a->start);
        int r = dial_thread(attempt_connect, a);
        if (r < 0) {
            free(a);
            log_at(LOG_ERROR, "%s: cannot start a thread to connect to NATS: %s", key,
                   strerror(-r));
            return r;
        }
        inflight = a;
    }
    a->refs++;
    /* Until the attempt's deadline; then, if it goes on, the supervisor is started (once: a
     * thread start costs 0.5-1 ms on a small VM, paid only by a connect that hangs), and the
     * wait goes on for the margin nats.c gets to report its own timeout. */
    struct timespec deadline = ts_after(a->start, a->timeout_ms);
    while (!a->done && pthread_cond_timedwait(&conn_cv, &conn_mu, &deadline) != ETIMEDOUT)
        ;
    if (!a->done && !a->supervised) {
        a->supervised = 1;
        a->refs++;
        if (dial_thread(attempt_supervise, a) < 0) {
            a->refs--;
            log_at(LOG_WARN, "%s: no thread to watch the connect past its deadline", key);
        }
    }
    deadline = ts_after(deadline, CONNECT_MARGIN_MS);
    while (!a->done && pthread_cond_timedwait(&conn_cv, &conn_mu, &deadline) != ETIMEDOUT)
        ;
    int late = !a->done;
    int r = late ? -ETIMEDOUT : a->r;
    attempt_put_locked(a, 1);
    if (late)
        log_at(LOG_ERROR, "%s%scannot connect to NATS at %s: no answer within %lld ms", key,
               *key ? ": " : "", cfg->url_safe, (long long)cfg->timeout_ms);
    return r;
}

int conn_acquire(kv_conn **out, const char *key)
{
    return conn_acquire_for(out, key, "");
}

int conn_acquire_for(kv_conn **out, const char *key, const char *bucket)
{
    kv_conn *dead = NULL;
    int r = 0;
    pthread_mutex_lock(&conn_mu);
    if (cur && natsConnection_IsClosed(cur->nc)) {
        log_at(LOG_WARN, "the NATS connection was closed; connecting again");
        cur->detached = 1;
        if (cur->refs == 0)
            dead = cur;
        cur = NULL;
    }
    if (!cur)
        r = connect_wait_locked(key, bucket ? bucket : "");
    if (r == 0 && !cur)
        r = -ETIMEDOUT;         /* connected, then detached by a fork: cannot happen here */
    if (r == 0) {
        cur->refs++;
        *out = cur;
    }
    pthread_mutex_unlock(&conn_mu);
    if (dead)
        conn_free(dead);
    return r;
}

int conn_current(kv_conn **out)
{
    int r = -ENOTCONN;
    pthread_mutex_lock(&conn_mu);
    if (cur && !natsConnection_IsClosed(cur->nc)) {
        cur->refs++;
        *out = cur;
        r = 0;
    }
    pthread_mutex_unlock(&conn_mu);
    return r;
}

void conn_release(kv_conn *c)
{
    pthread_mutex_lock(&conn_mu);
    int last = --c->refs == 0 && c->detached;
    pthread_mutex_unlock(&conn_mu);
    if (last)
        conn_free(c);
}

/* ---- inboxes ---- */

int conn_inbox(kv_conn *c, char *out, size_t outsz)
{
    unsigned long n = __atomic_add_fetch(&c->inbox_seq, 1, __ATOMIC_RELAXED);
    int w = snprintf(out, outsz, "%s.own%lu", c->inbox, n);
    return w > 0 && (size_t)w < outsz ? 0 : -ENAMETOOLONG;
}

/* ---- fork ---- */

void conn_after_fork_child(void)
{
    pthread_mutex_init(&conn_mu, NULL);
    pthread_mutex_init(&id_mu, NULL);
    pthread_cond_init(&conn_cv, NULL);
    cur = NULL;                 /* leaked on purpose: its threads are not in this process */
    inflight = NULL;            /* so is an attempt under way: its threads are the parent's */
    id_prefix[0] = '\0';        /* the child must never reuse the parent's message ids */
    id_count = 0;
    bucket_after_fork_child();
    guard_after_fork_child();
    cache_after_fork_child();
}
