/* serve.h: the parts of `asya-state serve` shared between cli/serve*.c (not a public API).
 *
 *   serve.c        the command: configuration, the kv mount, readiness, the Unix socket, the
 *                  daemons (one epoll thread each), signals and the graceful stop;
 *   serve_pool.c   the worker threads that make the blocking kv calls;
 *   serve_standby.c accepts for a spare daemon while the main one's thread is held;
 *   serve_limits.c the header deadline of connections and the budget of request bodies;
 *   serve_http.c   one HTTP request: body accumulation, routing (the raw path, as Asya's
 *                  server takes it), responses, errno -> HTTP, the /keys and /meta routes;
 *   serve_query.c  POST /query over the JSON values under a prefix;
 *   serve_keys.c   query strings (decoded as Python's parse_qs does), key validation, listings.
 *
 * Every function returns 0 or a negative errno unless it says otherwise; none sets errno.
 */
#ifndef ASYA_CLI_SERVE_H
#define ASYA_CLI_SERVE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>

#include "kv/kv.h"

/* Shared by every thread. ops, mount, max_body and body_budget are set before the daemon
 * starts and never change; stopping, ready, in_flight and body_used are atomics; health_mu
 * guards not_ready and the changes of ready (serve_health() reads both together). */
struct serve_ctx {
    const kv_ops *ops;
    kv_mount *mount;
    size_t max_body;        /* largest PUT body accepted before kv is asked (413 beyond) */
    atomic_int stopping;    /* 1 once SIGTERM/SIGINT arrived: new requests get 503 */
    atomic_int ready;       /* 1 while the server and the bucket answer (healthz 200) */
    pthread_mutex_t health_mu;
    char not_ready[256];    /* health_mu: why not ready, for /healthz */
    atomic_long in_flight;  /* requests begun and not yet completed */
    size_t body_budget;     /* all request bodies in memory at once stay under this */
    atomic_size_t body_used; /* bytes of it reserved by requests in progress */
    struct MHD_Daemon *spare; /* serve_standby.c's daemon (set before the main one starts) */
    atomic_llong inline_since; /* the MHD thread's kv call began then (monotonic ns); 0: none */
};

/* One request's answer: the JSON error body of the protocol, in Asya's bytes
 * ({"error": code, "message": ...}, Python json.dumps separators). */
struct serve_reply {
    unsigned status;
    struct MHD_Response *resp; /* NULL: out of memory, the connection is dropped */
};

/* serve.c: 1 when the backend answered the last probe; else 0 and the reason in why. */
int serve_health(struct serve_ctx *ctx, char *why, size_t n);

/* serve_http.c: the libmicrohttpd callbacks; cls is the struct serve_ctx. */
void *serve_req_begin(void *cls, const char *uri, struct MHD_Connection *c);
enum MHD_Result serve_access(void *cls, struct MHD_Connection *c, const char *url,
                             const char *method, const char *version, const char *upload_data,
                             size_t *upload_data_size, void **req_cls);
void serve_req_done(void *cls, struct MHD_Connection *c, void **req_cls,
                    enum MHD_RequestTerminationCode why);

/* serve_http.c: building answers (for serve_query.c too). */
void serve_reply_json(struct serve_reply *r, unsigned status, json_t *j); /* steals j */
void serve_reply_error(struct serve_reply *r, unsigned status, const char *error,
                       const char *message);
/* The contract's errno -> status table; message is the whole message. */
void serve_reply_errno(struct serve_reply *r, int err, const char *message);

/* serve_limits.c: the header deadline and the body budget (see its first comment). */
int serve_limits_start(struct serve_ctx *ctx, unsigned header_seconds); /* the reaper */
void serve_conn_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                       enum MHD_ConnectionNotificationCode toe); /* MHD_OPTION_NOTIFY_CONNECTION */
void serve_conn_headers_done(struct MHD_Connection *c); /* the body's deadline starts */
void serve_conn_body(struct MHD_Connection *c, size_t n); /* n body bytes buy more time */
void serve_conn_served(struct MHD_Connection *c);       /* no deadline while it is served */
void serve_conn_answered(struct MHD_Connection *c);     /* the next request's deadline */
/* Reserves n bytes of the body budget: 0, or -ENOBUFS when they do not fit now. */
int64_t serve_now_ns(void); /* CLOCK_MONOTONIC in ns (serve_limits.c) */
int serve_budget_take(struct serve_ctx *ctx, size_t n);
void serve_budget_give(struct serve_ctx *ctx, size_t n);

/* serve_standby.c: the thread that accepts for the spare daemon while the main daemon's
 * thread is held by a kv call (see its first comment). */
int serve_standby_start(struct serve_ctx *ctx, int listen_fd, struct MHD_Daemon *spare);
/* After ctx->stopping is set: waits for the thread's end, so the spare can be stopped. */
void serve_standby_stop(void);

/* serve_pool.c: runs fn(arg) on a worker thread (started on demand, then kept). */
int serve_pool_submit(void (*fn)(void *), void *arg);

/* serve_query.c: POST /query with body[0..len) into *r. */
void serve_query(struct serve_ctx *ctx, const char *body, size_t len, struct serve_reply *r);

/* serve_keys.c */

/* Decodes n bytes of s as Python's urllib.parse.unquote_plus does for query strings: '+' is
 * a space, %XX a byte, a '%' not followed by two hex digits stays as it is. Into a new
 * NUL-terminated string *out (caller frees). -EINVAL when the result would hold a NUL. */
int serve_url_decode(const char *s, size_t n, char **out);

/* Finds parameter name in the raw query string q (may be NULL) as parse_qs does (pairs split
 * on '&', a blank value counts as absent, the first one wins) and decodes its value into
 * *out (caller frees). -ENOENT when absent or blank, -EINVAL when it decodes to a NUL. */
int serve_query_get(const char *q, const char *name, char **out);

/* Turns a raw wire key into a kv rel, in place: a single trailing '/' is removed and
 * *is_dir set (1: the key names a directory); the rest must be non-empty '/'-separated
 * segments, none empty, "." or "..". -EINVAL otherwise. */
int serve_key_rel(char *key, int *is_dir);

/* The listing of prefix P as Asya's connectors give it: keys are full keys below the mount,
 * prefixes full "dir/" entries; one level when recursive is 0 (delimiter "/"), every key
 * below when 1. Both arrays sorted. *out is {"keys": [...], "prefixes": [...]} (caller
 * json_decref()s). -EINVAL for a prefix with an empty, "." or ".." directory segment;
 * a name that is not UTF-8 is left out with a warning (JSON cannot carry it); a prefix below
 * no directory lists nothing. */
int serve_list(const kv_ops *ops, kv_mount *m, const char *prefix, int recursive,
               json_t **out);

#endif
