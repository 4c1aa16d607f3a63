/* serve_query.c: POST /query of Asya's object-store connectors, over the JSON values under
 * a prefix (SPEC "Sidecar mode").
 *
 * Body {"prefix", "filter", "sort", "limit", "offset"} (each optional; an empty body is {}),
 * answer {"rows": [...], "total": N}:
 *   - prefix: a plain string prefix of keys ("run-" matches "run-1/result"), "" for all;
 *   - filter: {field: value} equality, every pair must hold; a field is a dotted path into
 *     the document ("a.b" is doc["a"]["b"]); values compare as Asya's DuckDB query does, by
 *     their text: a string equals a number or boolean whose JSON text it is ("1" == 1), a
 *     missing field equals nothing;
 *   - sort: field names, "-name" for descending; numbers order by value and before every
 *     other value, the rest by their text (strings as they are); documents without the field
 *     come last either way; ties keep key order;
 *   - total counts the matching documents before limit and offset; rows are at most
 *     QUERY_MAX_ROWS (Asya's cap), limit 0 meaning that cap;
 *   - field names must match ^[a-zA-Z_][a-zA-Z0-9_.]*$; a filter that is not an object, a
 *     sort that is not an array of strings, a negative or non-integer limit or offset, a body
 *     that is not a JSON object: 400 bad_request. Values that are not JSON are skipped; a
 *     document with an integer beyond 64 bits (jansson's limit) fails the query with 500
 *     rather than be left out or answered rounded.
 * The values come from kv's scan (the read cache's mirror when fresh, else one pass over the
 * mount). A prefix holding more than QUERY_MAX_DOCS JSON documents is refused (400), where
 * Asya's stops reading at 1,000.
 *
 * Parsing is the cost (10,000 1 KiB documents: ~0.5 s of jansson on the bench machine), so
 * parsed documents are kept between queries: per key, a copy of the value and its parse; a
 * value byte-for-byte equal to the kept copy reuses the parse (exact: never a stale document).
 * At most PARSED_MAX_BYTES are kept, counting each entry's whole cost (kept_cost: the entry,
 * its key, the copy and an estimate of jansson's parse, which for small documents is far
 * larger than the document); a pass over a prefix forgets the kept keys
 * under it that it no longer saw (deleted). query_mu serialises queries and guards the kept
 * documents (they are shared, read-only, between the table and a query's answer).
 */
#include "cli/serve.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#define QUERY_MAX_DOCS 100000
#define QUERY_MAX_ROWS 10000
#define PARSED_MAX_BYTES (64u << 20)

typedef struct parsed {
    UT_hash_handle hh;
    json_t *j;          /* the parse; NULL when the value is not JSON */
    char *raw;          /* a copy of the value */
    size_t len;
    size_t cost;        /* what it counts against PARSED_MAX_BYTES (kept_cost) */
    uint64_t pass;      /* the last query pass that saw it */
    char rel[];
} parsed;

static pthread_mutex_t query_mu = PTHREAD_MUTEX_INITIALIZER;
static parsed *kept;        /* query_mu */
static size_t kept_bytes;   /* query_mu: the kept entries' cost (kept_cost) */
static uint64_t pass_no;    /* query_mu */

static void parsed_free(parsed *p)
{
    /* HASH_DEL of the entry parsed_sweep's HASH_ITER is on, then its free, is uthash's
     * idiom (the analyzer loses track of tmp): NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
    HASH_DEL(kept, p);
    kept_bytes -= p->cost;
    json_decref(p->j);
    free(p->raw);
    free(p);
}

/* The memory a kept document costs: the entry with its key (and uthash's handle), the copy,
 * and jansson's parse, estimated as twice the text plus 512 bytes (an object's table, its
 * keys and values are separate allocations: a 20-byte document parses into a few hundred). */
static size_t kept_cost(size_t rl, size_t len)
{
    return sizeof(parsed) + rl + 1 + len + 2 * len + 512;
}

/* How documents are read: any JSON value, NUL characters in strings kept ("\u0000"). */
#define QUERY_DECODE (JSON_DECODE_ANY | JSON_ALLOW_NUL)

/* The parse of rel's value data[0..len) (a new reference, or NULL: not JSON), from the kept
 * documents when the value is unchanged; query_mu held. *huge is set (and NULL returned) for
 * JSON that jansson cannot hold: an integer beyond 64 bits. */
static json_t *parse_kept(const char *rel, const void *data, size_t len, int *huge)
{
    parsed *p;
    HASH_FIND_STR(kept, rel, p);
    if (p && p->len == len && memcmp(p->raw, data, len) == 0) {
        p->pass = pass_no;
        return json_incref(p->j);
    }
    if (p)
        parsed_free(p);
    json_error_t err;
    json_t *j = json_loadb(data, len, QUERY_DECODE, &err);
    if (!j && json_error_code(&err) == json_error_numeric_overflow) {
        *huge = 1; /* never kept: asked again, it says so again */
        return NULL;
    }
    size_t rl = strlen(rel), cost = kept_cost(rl, len);
    if (kept_bytes + cost > PARSED_MAX_BYTES)
        return j; /* full: parsed every time */
    p = malloc(sizeof *p + rl + 1);
    char *raw = malloc(len ? len : 1);
    if (!p || !raw) {
        free(p);
        free(raw);
        return j;
    }
    memcpy(p->rel, rel, rl + 1);
    memcpy(raw, data, len);
    p->raw = raw;
    p->len = len;
    p->cost = cost;
    p->j = json_incref(j);
    p->pass = pass_no;
    HASH_ADD_STR(kept, rel, p);
    kept_bytes += cost;
    return j;
}

/* After a pass over prefix: forgets the kept keys under it that the pass did not see. */
static void parsed_sweep(const char *prefix)
{
    size_t n = strlen(prefix);
    parsed *p, *tmp;
    HASH_ITER(hh, kept, p, tmp)
        if (p->pass != pass_no && strncmp(p->rel, prefix, n) == 0)
            parsed_free(p);
}

typedef struct doc {
    char *rel;
    json_t *j;
} doc;

typedef struct sort_key {
    const char *field;
    int desc;
} sort_key;

typedef struct query {
    json_t *filter;     /* object, borrowed */
    sort_key *sort;
    size_t nsort;
    doc *v;
    size_t n, cap;
    size_t seen;        /* JSON documents under the prefix */
    char huge[300];     /* the first document with an integer jansson cannot hold */
} query;

/* 1 when name matches ^[a-zA-Z_][a-zA-Z0-9_.]*$ */
static int field_ok(const char *s)
{
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
        return 0;
    for (s++; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_' || *s == '.' ||
              (*s >= '0' && *s <= '9')))
            return 0;
    return 1;
}

/* doc's value at the dotted path field, or NULL. */
static json_t *lookup(json_t *j, const char *field)
{
    char seg[256];
    while (j && *field) {
        size_t n = strcspn(field, ".");
        if (n >= sizeof seg || !json_is_object(j))
            return NULL;
        memcpy(seg, field, n);
        seg[n] = '\0';
        j = json_object_get(j, seg);
        field += n + (field[n] == '.');
    }
    return j;
}

/* A scalar's text as DuckDB's json_extract_string gives it (malloc'ed, *len its length: a
 * string may hold NULs), or NULL. */
static char *text_of(json_t *v, size_t *len)
{
    char *t;
    if (json_is_string(v)) {
        *len = json_string_length(v);
        if ((t = malloc(*len + 1)))
            memcpy(t, json_string_value(v), *len + 1);
        return t;
    }
    t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT); /* (a NUL in it is \u0000) */
    *len = t ? strlen(t) : 0;
    return t;
}

/* Two texts compared as strcmp would compare them without their NULs' cut. */
static int text_cmp(const char *a, size_t la, const char *b, size_t lb)
{
    int c = memcmp(a, b, la < lb ? la : lb);
    return c ? c : (la > lb) - (la < lb);
}

static int values_equal(json_t *a, json_t *want)
{
    if (!a)
        return 0;
    if (json_is_number(a) && json_is_number(want))
        return json_number_value(a) == json_number_value(want);
    if (json_equal(a, want))
        return 1;
    if (json_is_string(a) == json_is_string(want) || json_is_null(a) || json_is_null(want))
        return 0;
    size_t la, lw;
    char *ta = text_of(a, &la), *tw = text_of(want, &lw);
    int eq = ta && tw && text_cmp(ta, la, tw, lw) == 0;
    free(ta);
    free(tw);
    return eq;
}

static int matches(const query *qy, json_t *j)
{
    const char *field;
    json_t *want;
    json_object_foreach(qy->filter, field, want)
        if (!values_equal(lookup(j, field), want))
            return 0;
    return 1;
}

/* kv scan callback: parse, filter, keep. */
static int take(void *arg, const char *rel, const void *data, size_t len)
{
    query *qy = arg;
    int huge = 0;
    json_t *j = data ? parse_kept(rel, data, len, &huge) : NULL;
    if (huge) { /* JSON, but not answerable exactly: the query fails rather than omit it */
        snprintf(qy->huge, sizeof qy->huge, "%s", rel);
        return -EOVERFLOW;
    }
    if (!j)
        return 0; /* not JSON: skipped */
    if (++qy->seen > QUERY_MAX_DOCS) {
        json_decref(j);
        return -E2BIG;
    }
    if (qy->filter && !matches(qy, j)) {
        json_decref(j);
        return 0;
    }
    if (qy->n == qy->cap) {
        size_t cap = qy->cap ? qy->cap * 2 : 64;
        doc *v = realloc(qy->v, cap * sizeof *v);
        if (!v) {
            json_decref(j);
            return -ENOMEM;
        }
        qy->v = v;
        qy->cap = cap;
    }
    char *r = strdup(rel);
    if (!r) {
        json_decref(j);
        return -ENOMEM;
    }
    qy->v[qy->n++] = (doc){ r, j };
    /* r now belongs to qy->v, freed with it */
    /* cppcheck-suppress memleak */
    return 0;
}

static const query *sorting; /* qsort has no argument: set around the call, under sort_mu */

static int cmp_value(json_t *a, json_t *b)
{
    int na = json_is_number(a), nb = json_is_number(b);
    if (na && nb) {
        double x = json_number_value(a), y = json_number_value(b);
        return x < y ? -1 : x > y;
    }
    if (na != nb)
        return na ? -1 : 1;
    size_t la = 0, lb = 0;
    char *ta = text_of(a, &la), *tb = text_of(b, &lb);
    int c = text_cmp(ta ? ta : "", ta ? la : 0, tb ? tb : "", tb ? lb : 0);
    free(ta);
    free(tb);
    return c;
}

static int cmp_doc(const void *x, const void *y)
{
    const doc *a = x, *b = y;
    for (size_t i = 0; i < sorting->nsort; i++) {
        json_t *va = lookup(a->j, sorting->sort[i].field);
        json_t *vb = lookup(b->j, sorting->sort[i].field);
        if (!va || !vb) { /* missing last, whatever the direction */
            if (va || vb)
                return va ? -1 : 1;
            continue;
        }
        int c = cmp_value(va, vb);
        if (c)
            return sorting->sort[i].desc ? -c : c;
    }
    return strcmp(a->rel, b->rel);
}

/* limit/offset: absent or null is 0; a negative or non-integral number or another type is
 * -EINVAL. */
static int get_count(json_t *body, const char *name, size_t *out)
{
    json_t *v = json_object_get(body, name);
    *out = 0;
    if (!v || json_is_null(v))
        return 0;
    double d = json_is_integer(v) ? (double)json_integer_value(v)
             : json_is_real(v) ? json_real_value(v) : -1;
    if (!json_is_number(v) || d < 0 || d != floor(d))
        return -EINVAL;
    *out = d > (double)SIZE_MAX / 2 ? SIZE_MAX / 2 : (size_t)d;
    return 0;
}

static void bad(struct serve_reply *r, const char *msg)
{
    serve_reply_error(r, 400, "bad_request", msg);
}

void serve_query(struct serve_ctx *ctx, const char *body, size_t len, struct serve_reply *r)
{
    static pthread_mutex_t sort_mu = PTHREAD_MUTEX_INITIALIZER;
    json_error_t err;
    json_t *b = len ? json_loadb(body, len, JSON_ALLOW_NUL, &err) : json_object();
    query qy = { 0 };
    size_t limit, offset;
    char msg[400];
    if (!b)
        return bad(r, "invalid JSON body");
    json_t *prefix = json_object_get(b, "prefix");
    json_t *filter = json_object_get(b, "filter");
    json_t *sort = json_object_get(b, "sort");
    if (!json_is_object(b)) {
        bad(r, "the body must be a JSON object");
        goto out;
    }
    if (prefix && !json_is_null(prefix) && !json_is_string(prefix)) {
        bad(r, "prefix must be a string");
        goto out;
    }
    if (filter && !json_is_null(filter) && !json_is_object(filter)) {
        bad(r, "filter must be an object");
        goto out;
    }
    if (sort && !json_is_null(sort) && !json_is_array(sort)) {
        bad(r, "sort must be an array of field names");
        goto out;
    }
    if (get_count(b, "limit", &limit) < 0 || get_count(b, "offset", &offset) < 0) {
        bad(r, "limit and offset must be integers >= 0");
        goto out;
    }
    const char *field;
    json_t *v;
    if (json_is_object(filter)) {
        json_object_foreach(filter, field, v) {
            if (!field_ok(field)) {
                snprintf(msg, sizeof msg, "invalid field name: '%.300s'", field);
                bad(r, msg);
                goto out;
            }
        }
        qy.filter = json_object_size(filter) ? filter : NULL;
    }
    size_t ns = json_is_array(sort) ? json_array_size(sort) : 0;
    qy.sort = ns ? calloc(ns, sizeof *qy.sort) : NULL;
    if (ns && !qy.sort) {
        serve_reply_error(r, 500, "internal_error", "out of memory");
        goto out;
    }
    for (size_t i = 0; i < ns; i++) {
        const char *s = json_string_value(json_array_get(sort, i));
        if (!s) {
            bad(r, "sort must be an array of field names");
            goto out;
        }
        int desc = s[0] == '-';
        if (!field_ok(s + desc)) {
            snprintf(msg, sizeof msg, "invalid field name: '%.300s'", s + desc);
            bad(r, msg);
            goto out;
        }
        qy.sort[qy.nsort++] = (sort_key){ s + desc, desc };
    }

    const char *p = json_is_string(prefix) ? json_string_value(prefix) : "";
    /* a prefix with a NUL: no key has one (file names cannot), so no document matches */
    int none = json_is_string(prefix) && strlen(p) != json_string_length(prefix);
    pthread_mutex_lock(&query_mu);
    pass_no++;
    int rc = none ? 0 : ctx->ops->scan(ctx->mount, p, take, &qy);
    if (rc == 0 && !none) /* (a sweep of the cut prefix would drop what it did not scan) */
        parsed_sweep(p);
    if (rc == -E2BIG) {
        snprintf(msg, sizeof msg, "prefix '%.300s' holds more than %d documents; use a "
                 "narrower prefix", p, QUERY_MAX_DOCS);
        bad(r, msg);
        goto unlock;
    }
    if (rc == -EOVERFLOW) {
        snprintf(msg, sizeof msg, "query prefix=%.100s: %.250s holds an integer beyond 64 "
                 "bits, which this connector cannot answer exactly", p, qy.huge);
        serve_reply_error(r, 500, "internal_error", msg);
        goto unlock;
    }
    if (rc < 0) {
        snprintf(msg, sizeof msg, "query prefix=%.300s: %s", p, strerror(-rc));
        serve_reply_errno(r, rc, msg);
        goto unlock;
    }
    pthread_mutex_lock(&sort_mu);
    sorting = &qy;
    if (qy.n)
        qsort(qy.v, qy.n, sizeof *qy.v, cmp_doc);
    pthread_mutex_unlock(&sort_mu);
    if (limit == 0 || limit > QUERY_MAX_ROWS)
        limit = QUERY_MAX_ROWS;
    json_t *rows = json_array();
    for (size_t i = offset; rows && i < qy.n && i - offset < limit; i++)
        json_array_append(rows, qy.v[i].j);
    /* dumped under query_mu: the rows are kept documents, shared with the table */
    serve_reply_json(r, 200, json_pack("{s:o, s:I}", "rows", rows, "total", (json_int_t)qy.n));
unlock:
    for (size_t i = 0; i < qy.n; i++) {
        free(qy.v[i].rel);
        json_decref(qy.v[i].j);
    }
    qy.n = 0;
    pthread_mutex_unlock(&query_mu);
out:
    free(qy.v);
    free(qy.sort);
    json_decref(b);
}
