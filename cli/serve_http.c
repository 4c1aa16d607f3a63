/* serve_http.c: one request of Asya's state-proxy connector protocol, on libmicrohttpd.
 *
 * A request's life: serve_req_begin (URI log callback) keeps the raw URI, before MHD's own
 * unescaping, so keys are decoded exactly once and a %00 is refused; serve_access is called
 * for the headers, for each piece of body, and once more at the end, when the request is
 * dispatched to the kv operations; serve_req_done frees it, whether it completed or not, so
 * a truncated body never reaches kv. Each connection has its own thread (serve.c), so a
 * blocking kv call holds up only its own connection.
 *
 * Routes (SPEC "Sidecar mode", shaped like Asya's connector server):
 *   GET /healthz                      200 {"status": "ready"}
 *   GET /keys/?prefix=P&delimiter=D   200 {"keys": [...], "prefixes": [...]}
 *   GET|HEAD|PUT|DELETE /keys/{key}   200 value | 200 Content-Length, X-Is-File | 204 | 204
 *   GET /meta/{key}[?attr=version]    200 {"attrs": ["version"]} | {"attr", "value"}
 *   PUT /meta/{key}?attr=A            403 for version, 400 unsupported_attribute otherwise
 * A key ending in "/" names a directory: PUT creates its marker (and its parents'), DELETE
 * removes it, HEAD stats it. Errors are JSON {"error", "message"}.
 */
#include "cli/serve.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

enum serve_method { M_GET, M_HEAD, M_PUT, M_DELETE, M_OTHER };

struct serve_req {
    char *uri;          /* raw request target, as sent */
    int started;        /* the header call of serve_access has happened */
    int counted;        /* counted in ctx->in_flight */
    enum serve_method method;
    char *body;         /* PUT body so far */
    size_t len, cap;
    int too_large;      /* the body passed ctx->max_body: kept reading, not stored */
};

void *serve_req_begin(void *cls, const char *uri, struct MHD_Connection *c)
{
    (void)cls;
    (void)c;
    struct serve_req *r = calloc(1, sizeof *r);
    if (r)
        r->uri = strdup(uri ? uri : "");
    return r; /* NULL (out of memory) is answered 500 by serve_access */
}

void serve_req_done(void *cls, struct MHD_Connection *c, void **req_cls,
                    enum MHD_RequestTerminationCode why)
{
    struct serve_ctx *ctx = cls;
    struct serve_req *r = *req_cls;
    (void)c;
    if (!r)
        return;
    if (why != MHD_REQUEST_TERMINATED_COMPLETED_OK && r->started)
        log_at(LOG_INFO, "serve: request %s ended early (%d), nothing written",
               r->uri ? r->uri : "?", (int)why);
    if (r->counted)
        atomic_fetch_sub(&ctx->in_flight, 1);
    free(r->uri);
    free(r->body);
    free(r);
    *req_cls = NULL;
}

/* ---- responses ---------------------------------------------------------------------- */

static enum MHD_Result send_and_free(struct MHD_Connection *c, unsigned status,
                                     struct MHD_Response *resp)
{
    if (!resp)
        return MHD_NO; /* out of memory: MHD closes the connection */
    enum MHD_Result ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result respond_json(struct MHD_Connection *c, unsigned status, json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s)
        return MHD_NO;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(s);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    return send_and_free(c, status, resp);
}

static enum MHD_Result respond_error(struct MHD_Connection *c, unsigned status,
                                     const char *error, const char *message)
{
    json_t *j = json_pack("{s:s, s:s}", "error", error, "message", message);
    if (!j) /* the message held a key that is not UTF-8: send the error without it */
        j = json_pack("{s:s, s:s}", "error", error, "message", "(key not shown: not UTF-8)");
    return respond_json(c, status, j);
}

static enum MHD_Result respond_empty(struct MHD_Connection *c, unsigned status)
{
    return send_and_free(c, status,
                         MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT));
}

/* The table of the contract: a kv errno becomes a status and an error name. */
static enum MHD_Result respond_errno(struct MHD_Connection *c, int err, const char *what,
                                     const char *key)
{
    unsigned status = MHD_HTTP_INTERNAL_SERVER_ERROR;
    const char *name = "internal_error";
    switch (-err) {
    case ENOENT: status = 404; name = "key_not_found"; break;
    case EEXIST: status = 409; name = "conflict"; break;
    case ENOTEMPTY: status = 409; name = "conflict"; break;
    case EFBIG: status = 413; name = "too_large"; break;
    case EINVAL: case ENAMETOOLONG: case ENOTDIR: case EISDIR: case ENOTSUP:
        status = 400; name = "bad_request"; break;
    case EACCES: case EPERM: status = 403; name = "permission_denied"; break;
    case ECONNREFUSED: case EIO: /* the store cannot serve: no server, no bucket, bad config */
        status = 503; name = "unavailable"; break;
    case ETIMEDOUT: status = 504; name = "timeout"; break;
    default: break;
    }
    char msg[1200];
    snprintf(msg, sizeof msg, "%s %s: %s", what, key, strerror(-err));
    log_at(LOG_DEBUG, "serve: %s -> %u", msg, status); /* kv logged the failure itself */
    return respond_error(c, status, name, msg);
}

/* ---- /keys -------------------------------------------------------------------------- */

static enum MHD_Result keys_get(struct serve_ctx *ctx, struct MHD_Connection *c,
                                const char *rel)
{
    kv_value v = { 0 };
    int r = ctx->ops->get(ctx->mount, rel, &v);
    if (r < 0)
        return respond_errno(c, r, "get", rel);
    struct MHD_Response *resp =
        /* MUST_COPY: libmicrohttpd copies, so the const cast writes nothing */
        MHD_create_response_from_buffer(v.len, (void *)v.data, MHD_RESPMEM_MUST_COPY);
    ctx->ops->release_value(&v);
    if (resp)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                "application/octet-stream");
    return send_and_free(c, MHD_HTTP_OK, resp);
}

/* Never called: a HEAD response carries the length of a body it does not send. */
static ssize_t no_body(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    (void)pos;
    (void)buf;
    (void)max;
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

static enum MHD_Result keys_head(struct serve_ctx *ctx, struct MHD_Connection *c,
                                 const char *rel, int want_dir)
{
    kv_stat st = { 0 };
    int r = ctx->ops->stat(ctx->mount, rel, &st);
    if (r == 0 && want_dir && !st.is_dir)
        r = -ENOTDIR;
    if (r < 0)
        return respond_errno(c, r, "stat", rel);
    struct MHD_Response *resp = MHD_create_response_from_callback(
        st.is_dir ? 0 : st.size, 4096, no_body, NULL, NULL);
    if (resp)
        MHD_add_response_header(resp, "X-Is-File", st.is_dir ? "false" : "true");
    return send_and_free(c, MHD_HTTP_OK, resp);
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

static enum MHD_Result keys_put(struct serve_ctx *ctx, struct MHD_Connection *c,
                                struct serve_req *q, char *rel, int is_dir)
{
    const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                  MHD_HTTP_HEADER_IF_NONE_MATCH);
    int excl = inm && strcmp(inm, "*") == 0;
    int r;
    if (q->too_large) {
        char msg[64];
        snprintf(msg, sizeof msg, "body over %zu bytes", ctx->max_body);
        return respond_error(c, 413, "too_large", msg);
    }
    if (is_dir) {
        if (q->len)
            return respond_error(c, 400, "bad_request", "a directory key takes no body");
        r = make_dirs(ctx, rel, excl);
        return r < 0 ? respond_errno(c, r, "mkdir", rel) : respond_empty(c, 204);
    }
    r = ctx->ops->commit(ctx->mount, rel, q->body, q->len, excl ? KV_COMMIT_EXCL : 0, NULL);
    return r < 0 ? respond_errno(c, r, "put", rel) : respond_empty(c, 204);
}

static enum MHD_Result keys_delete(struct serve_ctx *ctx, struct MHD_Connection *c,
                                   const char *rel, int is_dir)
{
    int r = is_dir ? ctx->ops->rmdir(ctx->mount, rel) : ctx->ops->remove(ctx->mount, rel);
    return r < 0 ? respond_errno(c, r, "delete", rel) : respond_empty(c, 204);
}

static enum MHD_Result keys_list(struct serve_ctx *ctx, struct MHD_Connection *c,
                                 const char *query)
{
    char *prefix = NULL, *delim = NULL;
    int r = serve_query_get(query, "prefix", &prefix);
    if (r == -ENOENT)
        r = serve_url_decode("", 0, 0, &prefix);
    int rd = serve_query_get(query, "delimiter", &delim);
    enum MHD_Result ret;
    if (r < 0 || (rd < 0 && rd != -ENOENT)) {
        ret = respond_error(c, 400, "bad_request", "badly encoded query");
    } else if (delim && delim[0] && strcmp(delim, "/") != 0) {
        ret = respond_error(c, 400, "bad_request", "delimiter must be \"/\" or none");
    } else {
        json_t *out = NULL;
        r = serve_list(ctx->ops, ctx->mount, prefix, !(delim && delim[0]), &out);
        ret = r < 0 ? respond_errno(c, r, "list", prefix) : respond_json(c, 200, out);
    }
    free(prefix);
    free(delim);
    return ret;
}

/* ---- /meta -------------------------------------------------------------------------- */

static enum MHD_Result meta_get(struct serve_ctx *ctx, struct MHD_Connection *c,
                                const char *rel, const char *query)
{
    char *attr = NULL;
    int r = serve_query_get(query, "attr", &attr);
    if (r == -EINVAL)
        return respond_error(c, 400, "bad_request", "badly encoded query");
    if (attr && strcmp(attr, "version") != 0) {
        enum MHD_Result ret = respond_error(c, 400, "unsupported_attribute", attr);
        free(attr);
        return ret;
    }
    uint64_t rev = 0;
    r = ctx->ops->version(ctx->mount, rel, &rev);
    if (r < 0) {
        free(attr);
        return respond_errno(c, r, "version", rel);
    }
    json_t *j;
    if (attr) {
        char buf[24];
        snprintf(buf, sizeof buf, "%" PRIu64, rev);
        j = json_pack("{s:s, s:s}", "attr", "version", "value", buf);
    } else {
        j = json_pack("{s:[s]}", "attrs", "version");
    }
    free(attr);
    return respond_json(c, 200, j);
}

static enum MHD_Result meta_put(struct MHD_Connection *c, struct serve_req *q,
                                const char *query)
{
    char *attr = NULL;
    int r = serve_query_get(query, "attr", &attr);
    if (r < 0 || !attr[0]) {
        free(attr);
        return respond_error(c, 400, "bad_request", "attr query parameter required");
    }
    json_error_t jerr;
    json_t *body = q->too_large ? NULL : json_loadb(q->body ? q->body : "", q->len, 0, &jerr);
    enum MHD_Result ret;
    if (!json_is_object(body))
        ret = respond_error(c, 400, "bad_request", "invalid JSON body");
    else if (strcmp(attr, "version") == 0)
        ret = respond_error(c, 403, "permission_denied", "version is read-only");
    else
        ret = respond_error(c, 400, "unsupported_attribute", attr);
    json_decref(body);
    free(attr);
    return ret;
}

/* ---- dispatch ----------------------------------------------------------------------- */

/* The key after route ("/keys/", "/meta/") in path, decoded and checked; NULL with *resp
 * set to the answer when there is none or it is malformed. */
static char *route_key(struct MHD_Connection *c, const char *path, size_t plen, size_t rlen,
                       int *is_dir, enum MHD_Result *resp)
{
    char *key = NULL;
    if (plen == rlen) {
        *resp = respond_error(c, 404, "not_found", "no key in the path");
        return NULL;
    }
    if (serve_url_decode(path + rlen, plen - rlen, 0, &key) < 0 ||
        serve_key_rel(key, is_dir) < 0) {
        *resp = respond_error(c, 400, "bad_request",
                              "a key is '/'-separated names, none empty, \".\" or \"..\"");
        free(key);
        return NULL;
    }
    return key;
}

static enum MHD_Result dispatch(struct serve_ctx *ctx, struct MHD_Connection *c,
                                struct serve_req *q)
{
    const char *path = q->uri;
    const char *qmark = strchr(path, '?');
    const char *query = qmark ? qmark + 1 : NULL;
    size_t plen = qmark ? (size_t)(qmark - path) : strlen(path);
    enum MHD_Result ret = MHD_NO; /* route_key sets it whenever it returns NULL */
    int is_dir = 0;

    if (plen == 8 && memcmp(path, "/healthz", 8) == 0) {
        if (q->method != M_GET && q->method != M_HEAD)
            return respond_error(c, 400, "bad_request", "method not supported here");
        return respond_json(c, 200, json_pack("{s:s}", "status", "ready"));
    }
    if ((plen == 5 && memcmp(path, "/keys", 5) == 0) ||
        (plen == 6 && memcmp(path, "/keys/", 6) == 0)) {
        if (q->method == M_GET)
            return keys_list(ctx, c, query);
        return respond_error(c, 404, "not_found", "no key in the path");
    }
    if (plen >= 6 && memcmp(path, "/keys/", 6) == 0) {
        if (q->method == M_OTHER)
            return respond_error(c, 400, "bad_request", "method not supported here");
        char *rel = route_key(c, path, plen, 6, &is_dir, &ret);
        if (!rel)
            return ret;
        switch (q->method) {
        case M_GET:
            ret = is_dir ? respond_error(c, 400, "bad_request", "a directory has no value")
                         : keys_get(ctx, c, rel);
            break;
        case M_HEAD: ret = keys_head(ctx, c, rel, is_dir); break;
        case M_PUT: ret = keys_put(ctx, c, q, rel, is_dir); break;
        default: ret = keys_delete(ctx, c, rel, is_dir); break;
        }
        free(rel);
        return ret;
    }
    if (plen >= 6 && memcmp(path, "/meta/", 6) == 0) {
        if (q->method != M_GET && q->method != M_PUT)
            return respond_error(c, 400, "bad_request", "method not supported here");
        char *rel = route_key(c, path, plen, 6, &is_dir, &ret);
        if (!rel)
            return ret;
        ret = q->method == M_GET ? meta_get(ctx, c, rel, query) : meta_put(c, q, query);
        free(rel);
        return ret;
    }
    return respond_error(c, 404, "not_found", "no such endpoint");
}

static enum serve_method method_of(const char *m)
{
    static const struct { const char *name; enum serve_method m; } tab[] = {
        { "GET", M_GET }, { "HEAD", M_HEAD }, { "PUT", M_PUT }, { "DELETE", M_DELETE },
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strcmp(m, tab[i].name) == 0)
            return tab[i].m;
    return M_OTHER;
}

/* Keeps up to max_body bytes of the body; beyond, keeps reading but stores nothing. */
static void body_append(struct serve_ctx *ctx, struct serve_req *q, const char *data,
                        size_t n)
{
    if (q->too_large || q->method != M_PUT)
        return;
    if (n > ctx->max_body - q->len) {
        q->too_large = 1;
        free(q->body);
        q->body = NULL;
        q->len = q->cap = 0;
        return;
    }
    if (q->len + n > q->cap) {
        size_t cap = q->cap ? q->cap : 4096;
        while (cap < q->len + n)
            cap *= 2;
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

enum MHD_Result serve_access(void *cls, struct MHD_Connection *c, const char *url,
                             const char *method, const char *version, const char *upload_data,
                             size_t *upload_data_size, void **req_cls)
{
    struct serve_ctx *ctx = cls;
    struct serve_req *q = *req_cls;
    (void)url; /* already unescaped by MHD; we decode q->uri ourselves */
    (void)version;
    if (!q || !q->uri)
        return respond_error(c, 500, "internal_error", "out of memory");
    if (!q->started) {
        q->started = 1;
        q->counted = 1;
        atomic_fetch_add(&ctx->in_flight, 1);
        q->method = method_of(method);
        if (atomic_load(&ctx->stopping))
            return respond_error(c, 503, "unavailable", "shutting down");
        if (q->method == M_PUT) {
            const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                         MHD_HTTP_HEADER_CONTENT_LENGTH);
            if (cl && strtoull(cl, NULL, 10) > ctx->max_body)
                q->too_large = 1;
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        body_append(ctx, q, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    enum MHD_Result ret = dispatch(ctx, c, q);
    if (log_enabled(LOG_DEBUG))
        log_at(LOG_DEBUG, "serve: %s %s (%zu bytes in)", method, q->uri, q->len);
    return ret;
}
