/* serve_http.c: one request of Asya's state-proxy connector protocol, on libmicrohttpd.
 *
 * A request's life: serve_req_begin (URI log callback) keeps the raw request target, before
 * MHD's own unescaping; serve_access is called for the headers, for each piece of body, and
 * once more at the end. Then the request is routed on its raw path, as Asya's server
 * (asya_state_proxy/server.py, urllib.parse.urlparse) takes it: '#...' and '?...' split off,
 * and ';...' in the last segment, no percent-decoding: the key is the path after "/keys/"
 * byte for byte. Answers that need no kv call are built at once; so is a key request that is
 * alone in flight and alone on the main daemon's thread (its kv call made there); the others
 * suspend the connection and go to a pool worker (serve_pool.c), which builds the answer and
 * resumes it; MHD then calls serve_access again and the answer is queued. serve_req_done frees the
 * request whether it completed or not, so a truncated body never reaches kv.
 *
 * Routes (SPEC "Sidecar mode"):
 *   GET /healthz                      200 {"status": "ready"} | 503 while the store does not answer
 *   GET /keys/?prefix=P&delimiter=D   200 {"keys": [...], "prefixes": [...]} (D default "/")
 *   GET|PUT|DELETE /keys/{key}        200 value | 204 | 204
 *   HEAD /keys/{key}                  204 Content-Length, X-Is-File | 404 without a body
 *   GET /meta/{key}[?attr=version]    200 {"attrs": ["version"]} | {"attr", "value"}
 *   PUT /meta/{key}?attr=A            403 for version, 400 unsupported_attribute otherwise
 *                                     (/meta of a missing key: 404 before the attribute)
 *   POST /query                       serve_query.c
 * Anything else: 404 {"error": "not_found"}; a method other than these five: 501.
 * A key ending in "/" names a directory: PUT creates its marker (and its parents'), HEAD
 * stats it, DELETE answers 404 (as Asya's S3 connector: no object has that name).
 */
#include "cli/serve.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/log.h"

enum serve_method { M_GET, M_HEAD, M_PUT, M_DELETE, M_POST, M_OTHER };

struct serve_req {
    struct serve_ctx *ctx;
    struct MHD_Connection *conn;
    char *uri;          /* raw request target, as sent */
    const char *uri_end; /* where MHD's copy of it ends (its NUL), for framing_bad() */
    char method_name[16];
    int started;        /* the header call of serve_access has happened */
    int counted;        /* counted in ctx->in_flight */
    int queued;         /* handed to a worker: the answer arrives with the resume */
    enum serve_method method;
    int excl;           /* If-None-Match: * */
    int if_match;       /* If-Match: <revision> was given: update expecting if_rev */
    uint64_t if_rev;
    char *body;         /* PUT/POST body so far */
    size_t len, cap;
    int too_large;      /* the body passed ctx->max_body: kept reading, not stored */
    int busy;           /* the body did not fit the body budget: 503, kept reading, not stored */
    size_t reserved;    /* bytes of the body budget this request holds */
    struct serve_reply reply;
    int has_reply;
    /* the route, from route() */
    int route;          /* one of enum route */
    char *key;          /* the raw key after /keys/ or /meta/ (malloc'ed) */
    char *query;        /* the raw query string, or NULL (malloc'ed) */
};

enum route { R_NOT_FOUND, R_HEALTH, R_LIST, R_KEY, R_META, R_QUERY, R_BAD_METHOD };

void *serve_req_begin(void *cls, const char *uri, struct MHD_Connection *c)
{
    struct serve_req *r = calloc(1, sizeof *r);
    if (r) {
        r->ctx = cls;
        r->conn = c;
        r->uri = strdup(uri ? uri : "");
        r->uri_end = uri ? uri + strlen(uri) : NULL;
    }
    return r; /* NULL (out of memory) is answered 500 by serve_access */
}

void serve_req_done(void *cls, struct MHD_Connection *c, void **req_cls,
                    enum MHD_RequestTerminationCode why)
{
    struct serve_ctx *ctx = cls;
    struct serve_req *r = *req_cls;
    if (!r)
        return;
    if (why != MHD_REQUEST_TERMINATED_COMPLETED_OK && r->started)
        log_at(LOG_INFO, "serve: request %s ended early (%d), nothing written",
               r->uri ? r->uri : "?", (int)why);
    if (r->counted)
        atomic_fetch_sub(&ctx->in_flight, 1);
    if (r->reserved)
        serve_budget_give(ctx, r->reserved);
    serve_conn_answered(c);
    if (r->reply.resp)
        MHD_destroy_response(r->reply.resp);
    free(r->uri);
    free(r->body);
    free(r->key);
    free(r->query);
    free(r);
    *req_cls = NULL;
}

/* ---- answers ------------------------------------------------------------------------ */

static void reply_set(struct serve_reply *r, unsigned status, struct MHD_Response *resp)
{
    if (r->resp)
        MHD_destroy_response(r->resp);
    r->status = status;
    r->resp = resp;
}

/* jansson's JSON_ENSURE_ASCII as Python's json.dumps writes it: \uXXXX in lowercase hex,
 * and DEL (0x7F) escaped too. Frees s; a new string, or NULL. */
static char *python_ascii(char *s)
{
    size_t n = 0, dels = 0;
    for (; s && s[n]; n++)
        dels += s[n] == 0x7f;
    char *o = s ? malloc(n + 5 * dels + 1) : NULL;
    size_t k = 0;
    for (size_t i = 0; o && i < n; i++) {
        if (s[i] == 0x7f) {
            memcpy(o + k, "\\u007f", 6);
            k += 6;
            continue;
        }
        o[k++] = s[i];
        if (s[i] != '\\' || i + 1 >= n)
            continue;
        o[k++] = s[++i]; /* an escape's second byte: never the start of another */
        for (int h = 0, u = s[i] == 'u'; u && h < 4 && i + 1 < n; h++)
            o[k++] = (char)tolower((unsigned char)s[++i]);
    }
    if (o)
        o[k] = '\0';
    free(s);
    return o;
}

void serve_reply_json(struct serve_reply *r, unsigned status, json_t *j)
{
    /* Python's json.dumps: ", " and ": " separators, non-ASCII as \uxxxx, insertion order */
    char *s = j ? python_ascii(json_dumps(j, JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER)) : NULL;
    json_decref(j);
    struct MHD_Response *resp =
        s ? MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE) : NULL;
    if (!resp)
        free(s);
    else
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    reply_set(r, status, resp);
}

void serve_reply_error(struct serve_reply *r, unsigned status, const char *error,
                       const char *message)
{
    json_t *j = json_object();
    json_object_set_new(j, "error", json_string(error));
    if (message && message[0]) {
        json_t *m = json_string(message);
        if (!m) /* a key that is not UTF-8 */
            m = json_string("(message not shown: not UTF-8)");
        json_object_set_new(j, "message", m);
    }
    serve_reply_json(r, status, j);
}

static void reply_empty(struct serve_reply *r, unsigned status)
{
    reply_set(r, status, MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT));
}

void serve_reply_errno(struct serve_reply *r, int err, const char *message)
{
    unsigned status = MHD_HTTP_INTERNAL_SERVER_ERROR;
    const char *name = "internal_error";
    switch (-err) {
    case ENOENT: status = 404; name = "key_not_found"; break;
    case EEXIST: case ENOTEMPTY: status = 409; name = "conflict"; break;
    case EFBIG: status = 413; name = "too_large"; break;
    case EINVAL: case ENAMETOOLONG: case ENOTDIR: case EISDIR: case ENOTSUP:
        status = 400; name = "bad_request"; break;
    case EACCES: case EPERM: status = 403; name = "permission_denied"; break;
    case ECONNREFUSED: status = 503; name = "unavailable"; break; /* no server reachable */
    case ETIMEDOUT: status = 504; name = "timeout"; break;
    default: break; /* EIO (bucket missing, bad configuration...) and the rest: 500 */
    }
    log_at(LOG_DEBUG, "serve: %s -> %u", message, status); /* kv logged the failure itself */
    serve_reply_error(r, status, name, message);
}

/* "<what> failed: key=<key>: <strerror>", or Asya's words where its tests match them. */
static void reply_kv_error(struct serve_reply *r, int err, const char *what, const char *key)
{
    char msg[1300];
    if (err == -ENOENT)
        snprintf(msg, sizeof msg, "Key not found: %s", key);
    else if (err == -ECONNREFUSED)
        snprintf(msg, sizeof msg, "NATS server unreachable: %s key=%s", what, key);
    else if (err == -ETIMEDOUT)
        snprintf(msg, sizeof msg, "Timed out: %s key=%s (outcome unknown for a write)", what,
                 key);
    else
        snprintf(msg, sizeof msg, "%s failed: key=%s: %s", what, key, strerror(-err));
    serve_reply_errno(r, err, msg);
}

/* Last-Modified, from the revision's time (ns since the epoch). */
static void add_mtime(struct MHD_Response *resp, int64_t ns)
{
    char buf[64];
    time_t t = (time_t)(ns / 1000000000);
    struct tm tm;
    if (resp && ns > 0 && gmtime_r(&t, &tm) &&
        strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LAST_MODIFIED, buf);
}

/* ---- /keys -------------------------------------------------------------------------- */

/* A value answered without a copy: libmicrohttpd releases it once the answer is written.
 * The release (nats.c hands the message to its collector thread, a wake-up) then happens on
 * MHD's thread after the send, not on the request's path, and a large value is never held
 * twice. */
struct held_value {
    const kv_ops *ops;
    kv_value v;
};

static void held_value_free(void *cls)
{
    struct held_value *h = cls;
    h->ops->release_value(&h->v);
    free(h);
}

static void keys_get(struct serve_ctx *ctx, struct serve_req *q, const char *rel)
{
    kv_value v = { 0 };
    int r = ctx->ops->get(ctx->mount, rel, &v);
    if (r < 0)
        return reply_kv_error(&q->reply, r, "read", q->key);
    struct held_value *h = malloc(sizeof *h);
    struct MHD_Response *resp = NULL;
    if (h) {
        *h = (struct held_value){ ctx->ops, v };
        /* the const cast: libmicrohttpd only reads the buffer */
        resp = MHD_create_response_from_buffer_with_free_callback_cls(
            v.len, (void *)v.data, held_value_free, h);
    }
    if (!resp) {
        ctx->ops->release_value(&v);
        free(h);
    }
    add_mtime(resp, v.mtime_ns);
    reply_set(&q->reply, MHD_HTTP_OK, resp);
}

static void keys_head(struct serve_ctx *ctx, struct serve_req *q, const char *rel, int want_dir)
{
    kv_stat st = { 0 };
    int r = ctx->ops->stat(ctx->mount, rel, &st);
    if (r == 0 && want_dir && !st.is_dir)
        r = -ENOENT;
    if (r == -ENOENT) /* Asya's server: a bare 404, no body */
        return reply_empty(&q->reply, MHD_HTTP_NOT_FOUND);
    if (r < 0)
        return reply_kv_error(&q->reply, r, "stat", q->key);
    /* 204 with the value's length, as Asya's server sends it: MHD would not write a
     * Content-Length for a 204 by itself. */
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (resp) {
        char len[24];
        snprintf(len, sizeof len, "%" PRIu64, st.is_dir ? (uint64_t)0 : st.size);
        MHD_set_response_options(resp, MHD_RF_INSANITY_HEADER_CONTENT_LENGTH, MHD_RO_END);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_LENGTH, len);
        MHD_add_response_header(resp, "X-Is-File", st.is_dir ? "false" : "true");
        add_mtime(resp, st.mtime_ns);
    }
    reply_set(&q->reply, MHD_HTTP_NO_CONTENT, resp);
}

/* mkdir -p: the marker of rel and of each parent; an existing directory is fine unless
 * the request was create-only. */
static int make_dirs(struct serve_ctx *ctx, char *rel, int excl)
{
    int r = 0;
    for (char *p = strchr(rel, '/'); p; p = strchr(p + 1, '/')) {
        *p = '\0';
        r = ctx->ops->mkdir(ctx->mount, rel);
        *p = '/';
        if (r < 0 && r != -EEXIST)
            return r;
    }
    r = ctx->ops->mkdir(ctx->mount, rel);
    return (r == -EEXIST && !excl) ? 0 : r;
}

static void keys_put(struct serve_ctx *ctx, struct serve_req *q, char *rel, int is_dir)
{
    int r;
    if (q->too_large) {
        char msg[128];
        snprintf(msg, sizeof msg, "Value too large: body over %zu bytes", ctx->max_body);
        return serve_reply_error(&q->reply, 413, "too_large", msg);
    }
    if (is_dir) {
        if (q->len)
            return serve_reply_error(&q->reply, 400, "bad_request",
                                     "a directory key takes no body");
        r = make_dirs(ctx, rel, q->excl);
        if (r == -EEXIST) {
            char msg[1300];
            snprintf(msg, sizeof msg, "Exclusive create failed: key=%s already exists", q->key);
            return serve_reply_errno(&q->reply, r, msg);
        }
        return r < 0 ? reply_kv_error(&q->reply, r, "mkdir", q->key)
                     : reply_empty(&q->reply, 204);
    }
    /* Asya's handlers never make directories: a key's parents get their markers (once per
     * process per directory: the markers seen or written are remembered). */
    r = ctx->ops->mkparents(ctx->mount, rel);
    if (r < 0)
        return reply_kv_error(&q->reply, r, "write", q->key);
    uint64_t remembered = 0;
    int had = ctx->ops->recall(ctx->mount, rel, &remembered) == 0;
    uint64_t rev = q->if_rev;
    unsigned flags = q->excl ? KV_COMMIT_EXCL : q->if_match ? KV_COMMIT_EXPECT : 0;
    r = q->if_match && !q->excl && !rev ? -EEXIST
                                         : ctx->ops->commit(ctx->mount, rel, q->body, q->len,
                                                            flags, &rev);
    if (r == -EEXIST && q->if_match && !q->excl) {
        char msg[1300];
        snprintf(msg, sizeof msg, "Precondition failed: key=%s is not at revision %" PRIu64,
                 q->key, q->if_rev);
        return serve_reply_error(&q->reply, 412, "precondition_failed", msg);
    }
    if (r == -EEXIST) {
        char msg[1300], rev[24] = "none";
        if (had && remembered == KV_REV_ABSENT)
            snprintf(rev, sizeof rev, "absent");
        else if (had)
            snprintf(rev, sizeof rev, "%" PRIu64, remembered);
        if (q->excl)
            snprintf(msg, sizeof msg, "Exclusive create failed: key=%s already exists", q->key);
        else
            snprintf(msg, sizeof msg, "CAS conflict: key=%s cached_revision=%s", q->key, rev);
        return serve_reply_errno(&q->reply, r, msg);
    }
    if (r < 0)
        return reply_kv_error(&q->reply, r, "write", q->key);
    reply_empty(&q->reply, 204);
}

static void keys_delete(struct serve_ctx *ctx, struct serve_req *q, const char *rel, int is_dir)
{
    /* A directory is no object: 404, as Asya's S3 connector answers (and nothing is
     * deleted; rmdir of an empty directory is the shim's, not the protocol's). */
    int r = is_dir ? -ENOENT : ctx->ops->remove(ctx->mount, rel);
    if (r == -EISDIR || r == -ENOTDIR)
        r = -ENOENT;
    if (r < 0)
        return reply_kv_error(&q->reply, r, "delete", q->key);
    reply_empty(&q->reply, 204);
}

static void keys_list(struct serve_ctx *ctx, struct serve_req *q)
{
    char *prefix = NULL, *delim = NULL;
    int r = serve_query_get(q->query, "prefix", &prefix);
    if (r == -ENOENT)
        r = serve_url_decode("", 0, &prefix);
    int rd = serve_query_get(q->query, "delimiter", &delim);
    if (r < 0 || (rd < 0 && rd != -ENOENT)) {
        serve_reply_error(&q->reply, 400, "bad_request", "a NUL byte in the query");
    } else if (delim && strcmp(delim, "/") != 0) {
        serve_reply_error(&q->reply, 400, "bad_request", "delimiter must be \"/\"");
    } else {
        json_t *out = NULL;
        /* parse_qs drops a blank delimiter, so "/" is the only one that reaches here */
        r = serve_list(ctx->ops, ctx->mount, prefix, 0, &out);
        if (r < 0)
            reply_kv_error(&q->reply, r, "list", prefix);
        else
            serve_reply_json(&q->reply, 200, out);
    }
    free(prefix);
    free(delim);
}

/* ---- /meta -------------------------------------------------------------------------- */

/* As Asya's server with its connectors: the key is looked up first (404 for a missing one,
 * whatever the attribute), then the attribute (400 unsupported_attribute, 403 for writing
 * version). The answers that need no lookup (no attr on a PUT, a body that is not JSON) are
 * given at once by meta_put_check. */
static void meta_get(struct serve_ctx *ctx, struct serve_req *q, const char *rel)
{
    char *attr = NULL;
    int r = serve_query_get(q->query, "attr", &attr);
    if (r == -EINVAL)
        return serve_reply_error(&q->reply, 400, "bad_request", "a NUL byte in the query");
    uint64_t rev = 0;
    r = ctx->ops->version(ctx->mount, rel, &rev);
    if (r < 0) {
        free(attr);
        return reply_kv_error(&q->reply, r, "version", q->key);
    }
    json_t *j;
    if (attr && strcmp(attr, "version") != 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "'%.200s'", attr);
        free(attr);
        return serve_reply_error(&q->reply, 400, "unsupported_attribute", msg);
    } else if (attr) {
        char buf[24];
        snprintf(buf, sizeof buf, "%" PRIu64, rev);
        j = json_pack("{s:s, s:s}", "attr", "version", "value", buf);
    } else {
        j = json_pack("{s:[s]}", "attrs", "version");
    }
    free(attr);
    serve_reply_json(&q->reply, 200, j);
}

/* PUT /meta answers that need no lookup; 1 when q->reply was set. */
static int meta_put_check(struct serve_req *q)
{
    char *attr = NULL;
    if (serve_query_get(q->query, "attr", &attr) < 0) {
        serve_reply_error(&q->reply, 400, "bad_request", "attr query parameter required");
        return 1;
    }
    free(attr);
    json_error_t jerr;
    json_t *body = q->too_large ? NULL : json_loadb(q->body ? q->body : "", q->len,
                                                    JSON_DECODE_ANY, &jerr);
    if (!body)
        serve_reply_error(&q->reply, 400, "bad_request", "invalid JSON body");
    json_decref(body);
    return !body;
}

/* PUT /meta once meta_put_check passed: no attribute is writable. */
static void meta_put(struct serve_ctx *ctx, struct serve_req *q, const char *rel)
{
    char *attr = NULL;
    uint64_t rev = 0;
    int r = ctx->ops->version(ctx->mount, rel, &rev);
    char msg[300];
    if (r < 0)
        reply_kv_error(&q->reply, r, "version", q->key);
    else if (serve_query_get(q->query, "attr", &attr) < 0)
        serve_reply_error(&q->reply, 500, "internal_error", "out of memory");
    else if (strcmp(attr, "version") == 0)
        serve_reply_error(&q->reply, 403, "permission_denied", "version is read-only");
    else if (snprintf(msg, sizeof msg, "'%.200s'", attr) > 0)
        serve_reply_error(&q->reply, 400, "unsupported_attribute", msg);
    free(attr);
}

/* ---- routing ------------------------------------------------------------------------ */

/* Splits q->uri as urllib.parse.urlparse does: fragment, query, ';' params of the last
 * segment; sets q->route, q->key and q->query. */
static void route(struct serve_req *q)
{
    const char *u = q->uri;
    size_t n = strcspn(u, "#");
    size_t plen = strcspn(u, "?#");
    if (plen < n)
        q->query = strndup(u + plen + 1, n - plen - 1);
    const char *last = u;
    for (size_t i = 0; i < plen; i++)
        if (u[i] == '/')
            last = u + i;
    const char *semi = memchr(last, ';', plen - (size_t)(last - u));
    if (semi)
        plen = (size_t)(semi - u);

    int is_keys = plen > 6 && memcmp(u, "/keys/", 6) == 0;
    int is_meta = plen > 6 && memcmp(u, "/meta/", 6) == 0;
    int is_list = (plen == 5 && memcmp(u, "/keys", 5) == 0) ||
                  (plen == 6 && memcmp(u, "/keys/", 6) == 0);
    int is_health = plen == 8 && memcmp(u, "/healthz", 8) == 0;
    int is_query = plen == 6 && memcmp(u, "/query", 6) == 0;
    if (is_keys || is_meta)
        q->key = strndup(u + 6, plen - 6);

    q->route = R_NOT_FOUND;
    switch (q->method) {
    case M_GET:
        q->route = is_health ? R_HEALTH : is_keys ? R_KEY : is_list ? R_LIST
                 : is_meta ? R_META : R_NOT_FOUND;
        break;
    case M_PUT: q->route = is_meta ? R_META : is_keys ? R_KEY : R_NOT_FOUND; break;
    case M_HEAD: case M_DELETE: q->route = is_keys ? R_KEY : R_NOT_FOUND; break;
    case M_POST: q->route = is_query ? R_QUERY : R_NOT_FOUND; break;
    default: q->route = R_BAD_METHOD; break;
    }
}

/* The answers that need no kv call; 1 when q->reply was set. */
static int answer_at_once(struct serve_ctx *ctx, struct serve_req *q)
{
    char msg[64], why[256];
    if (q->busy && !q->too_large) {
        serve_reply_error(&q->reply, 503, "unavailable",
                          "busy: request bodies in memory at their limit, retry");
        if (q->reply.resp)
            MHD_add_response_header(q->reply.resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
        return 1;
    }
    switch (q->route) {
    case R_NOT_FOUND:
        serve_reply_error(&q->reply, 404, "not_found", NULL);
        return 1;
    case R_BAD_METHOD:
        snprintf(msg, sizeof msg, "Unsupported method ('%.16s')", q->method_name);
        serve_reply_error(&q->reply, 501, "not_implemented", msg);
        return 1;
    case R_HEALTH:
        if (serve_health(ctx, why, sizeof why))
            serve_reply_json(&q->reply, 200, json_pack("{s:s}", "status", "ready"));
        else
            serve_reply_error(&q->reply, 503, "unavailable", why);
        return 1;
    case R_META:
        return q->method == M_PUT && meta_put_check(q);
    default:
        return 0;
    }
}

/* Runs on a pool worker (or inline): every answer that calls kv. */
static void answer(struct serve_ctx *ctx, struct serve_req *q)
{
    if (q->route == R_LIST)
        return keys_list(ctx, q);
    if (q->route == R_QUERY)
        return serve_query(ctx, q->body, q->too_large ? 0 : q->len, &q->reply);
    int is_dir = 0;
    char *rel = q->key ? strdup(q->key) : NULL;
    if (!rel)
        return serve_reply_error(&q->reply, 500, "internal_error", "out of memory");
    if (serve_key_rel(rel, &is_dir) < 0) {
        free(rel);
        return serve_reply_error(&q->reply, 400, "bad_request",
                                 "a key is '/'-separated names, none empty, \".\" or \"..\"");
    }
    if (q->route == R_META && q->method == M_PUT)
        meta_put(ctx, q, rel);
    else if (q->route == R_META)
        meta_get(ctx, q, rel);
    else if (q->method == M_GET && is_dir)
        serve_reply_error(&q->reply, 400, "bad_request", "a directory has no value");
    else if (q->method == M_GET)
        keys_get(ctx, q, rel);
    else if (q->method == M_HEAD)
        keys_head(ctx, q, rel, is_dir);
    else if (q->method == M_PUT)
        keys_put(ctx, q, rel, is_dir);
    else
        keys_delete(ctx, q, rel, is_dir);
    free(rel);
}

static void answer_job(void *arg)
{
    struct serve_req *q = arg;
    answer(q->ctx, q);
    q->has_reply = 1;
    MHD_resume_connection(q->conn); /* serve_access runs again and queues the reply */
}

static enum serve_method method_of(const char *m)
{
    static const struct { const char *name; enum serve_method m; } tab[] = {
        { "GET", M_GET }, { "HEAD", M_HEAD }, { "PUT", M_PUT }, { "DELETE", M_DELETE },
        { "POST", M_POST },
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strcmp(m, tab[i].name) == 0)
            return tab[i].m;
    return M_OTHER;
}

/* A refused body: its bytes and its share of the body budget go at once, not when the
 * client has finished sending what will never be stored (a slow sender would hold the
 * budget for everybody). */
static void body_drop(struct serve_ctx *ctx, struct serve_req *q)
{
    free(q->body);
    q->body = NULL;
    q->len = q->cap = 0;
    if (q->reserved)
        serve_budget_give(ctx, q->reserved);
    q->reserved = 0;
}

/* Keeps up to max_body bytes of the body, within the body budget (reserved when the
 * Content-Length is known, as it grows otherwise); beyond either, keeps reading but stores
 * nothing. */
static void body_append(struct serve_ctx *ctx, struct serve_req *q, const char *data,
                        size_t n)
{
    if (q->too_large || q->busy || (q->method != M_PUT && q->method != M_POST))
        return;
    if (n > ctx->max_body - q->len) {
        q->too_large = 1;
        return body_drop(ctx, q);
    }
    if (q->len + n > q->cap) {
        size_t cap = q->cap ? q->cap : 4096;
        while (cap < q->len + n)
            cap *= 2;
        if (q->reserved >= q->len + n)
            cap = q->reserved; /* the Content-Length, at once: no copies while it grows */
        if (cap > q->reserved) {
            if (serve_budget_take(ctx, cap - q->reserved) < 0) {
                q->busy = 1;
                return body_drop(ctx, q);
            }
            q->reserved = cap;
        }
        char *b = realloc(q->body, cap);
        if (!b) {
            q->too_large = 1; /* answered 413: it did not fit */
            return;
        }
        q->body = b;
        q->cap = cap;
    }
    memcpy(q->body + q->len, data, n);
    q->len += n;
}

/* ---- framing ------------------------------------------------------------------------ */

struct framing {
    int content_length, transfer_encoding, not_chunked;
};

static enum MHD_Result framing_count(void *cls, enum MHD_ValueKind kind, const char *key,
                                     size_t key_size, const char *value, size_t value_size)
{
    struct framing *f = cls;
    (void)kind;
    (void)key_size;   /* libmicrohttpd 0.9.75 gives strlen() here: a NUL in a header value */
    (void)value_size; /* cannot be seen (it cuts the value; no header we read is widened) */
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
        f->content_length++;
    if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        f->transfer_encoding++;
        if (!value || strcasecmp(value, "chunked") != 0)
            f->not_chunked = 1;
    }
    return MHD_YES;
}

/* Why a request's framing is ambiguous, or NULL. Read as C strings, a NUL byte silently cuts
 * a name (the key "victim" from "/keys/victim\0/../../evil"), and a second Content-Length or
 * one beside Transfer-Encoding lets two parsers disagree on where the body ends (request
 * smuggling): all are refused with 400 before anything else, and the connection is closed.
 * The target's NUL: libmicrohttpd parses the request line in place and passes the target and
 * the version as pointers into it, so the version starts right after the target's own end
 * unless a NUL cut the target short. (A later libmicrohttpd that copied either string would
 * only make this check pass everything; t_sidecar_limits would say so.) */
static const char *framing_bad(struct serve_req *q, struct MHD_Connection *c,
                               const char *version)
{
    struct framing f = { 0 };
    if (q->uri_end && version > q->uri_end + 1 && version - q->uri_end < 65536)
        return "a NUL byte in the request target";
    MHD_get_connection_values_n(c, MHD_HEADER_KIND, framing_count, &f);
    if (f.content_length > 1)
        return "more than one Content-Length";
    if (f.transfer_encoding && f.content_length)
        return "both Content-Length and Transfer-Encoding";
    if (f.transfer_encoding > 1 || f.not_chunked)
        return "a Transfer-Encoding other than one chunked";
    return NULL;
}

static enum MHD_Result queue_reply(struct MHD_Connection *c, struct serve_req *q)
{
    if (!q->reply.resp)
        return MHD_NO; /* out of memory: MHD closes the connection */
    enum MHD_Result ret = MHD_queue_response(c, q->reply.status, q->reply.resp);
    MHD_destroy_response(q->reply.resp);
    q->reply.resp = NULL;
    return ret;
}

/* 1 when c is on the main daemon (not serve_standby.c's spare) and is its only connection. A
 * connection accepted in the same batch as c (MHD accepts up to ten at a time), or a kept-alive
 * one, is served by this thread only after c: while one is there, c's kv call goes to the
 * pool. */
static int alone_on_main(struct serve_ctx *ctx, struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_DAEMON);
    if (!ci || ci->daemon == ctx->spare)
        return 0;
    /* the daemon's count of connections: only its own thread changes it */
    const union MHD_DaemonInfo *di =
        MHD_get_daemon_info(ci->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return di && di->num_connections <= 1;
}

enum MHD_Result serve_access(void *cls, struct MHD_Connection *c, const char *url,
                             const char *method, const char *version, const char *upload_data,
                             size_t *upload_data_size, void **req_cls)
{
    struct serve_ctx *ctx = cls;
    struct serve_req *q = *req_cls;
    (void)url; /* already unescaped by MHD; the key is taken from q->uri, raw */
    if (!q || !q->uri) {
        struct serve_reply r = { 0 };
        serve_reply_error(&r, 500, "internal_error", "out of memory");
        if (!r.resp)
            return MHD_NO;
        enum MHD_Result ret = MHD_queue_response(c, r.status, r.resp);
        MHD_destroy_response(r.resp);
        return ret;
    }
    if (!q->started) {
        q->started = 1;
        q->counted = 1;
        atomic_fetch_add(&ctx->in_flight, 1);
        q->method = method_of(method);
        snprintf(q->method_name, sizeof q->method_name, "%s", method);
        const char *bad = framing_bad(q, c, version);
        if (bad) {
            log_at(LOG_INFO, "serve: refused a request with %s", bad);
            serve_reply_error(&q->reply, 400, "bad_request", bad);
            if (q->reply.resp)
                MHD_add_response_header(q->reply.resp, MHD_HTTP_HEADER_CONNECTION, "close");
            return queue_reply(c, q);
        }
        if (atomic_load(&ctx->stopping)) /* begun after SIGTERM; earlier ones finish */
            serve_reply_error(&q->reply, 503, "unavailable", "shutting down");
        q->has_reply = atomic_load(&ctx->stopping);
        const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                      MHD_HTTP_HEADER_IF_NONE_MATCH);
        q->excl = inm && strcmp(inm, "*") == 0;
        const char *im = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_IF_MATCH);
        if (im) { /* a revision, bare or as a quoted entity tag; else 0: nothing matches */
            char *end = NULL;
            const char *d = im + (*im == '"');
            uint64_t v = strtoull(d, &end, 10);
            q->if_match = 1;
            q->if_rev = end != d && (*end == '\0' || (*end == '"' && !end[1])) &&
                                v != KV_REV_ABSENT ? v : 0;
        }
        if (q->method == M_PUT || q->method == M_POST) {
            const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                         MHD_HTTP_HEADER_CONTENT_LENGTH);
            unsigned long long n = cl ? strtoull(cl, NULL, 10) : 0;
            if (n > ctx->max_body)
                q->too_large = 1;
            else if (n && serve_budget_take(ctx, (size_t)n) < 0)
                q->busy = 1;
            else
                q->reserved = (size_t)n;
        }
        serve_conn_headers_done(c);
        return MHD_YES;
    }
    if (*upload_data_size) {
        body_append(ctx, q, upload_data, *upload_data_size);
        serve_conn_body(c, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    serve_conn_served(c);
    if (q->has_reply)
        return queue_reply(c, q);
    if (q->queued)
        return MHD_YES; /* still with its worker */
    route(q);
    if (log_enabled(LOG_DEBUG))
        log_at(LOG_DEBUG, "serve: %s %s (%zu bytes in)", method, q->uri, q->len);
    if (answer_at_once(ctx, q))
        return queue_reply(c, q);
    /* A key request alone in flight is answered here, on the main daemon's thread that read
     * it: no suspend, no hand-off to a worker, no resume through MHD's ITC (two wake-ups
     * fewer). Only when alone: nobody else waits for this thread while its kv call lasts,
     * and if the call is held (a frozen server: up to NATS_TIMEOUT_MS), serve_standby.c
     * accepts new connections for the spare daemon meanwhile (inline_since tells it). */
    if ((q->route == R_KEY || q->route == R_META) && atomic_load(&ctx->in_flight) <= 1 &&
        alone_on_main(ctx, c)) {
        atomic_store(&ctx->inline_since, serve_now_ns());
        answer(ctx, q);
        atomic_store(&ctx->inline_since, 0);
        return queue_reply(c, q);
    }
    q->queued = 1;
    MHD_suspend_connection(c);
    if (serve_pool_submit(answer_job, q) < 0) {
        MHD_resume_connection(c);
        serve_reply_error(&q->reply, 500, "internal_error", "out of memory");
        q->has_reply = 1;
    }
    return MHD_YES;
}
