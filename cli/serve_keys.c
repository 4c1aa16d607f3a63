/* serve_keys.c: query strings of the connector protocol (decoded as Python's parse_qs does),
 * validation of raw wire keys into kv rels, and the listing endpoint's walk over kv
 * directories.
 * Owns no state; every string it returns is malloc()ed and freed by the caller. */
#include "cli/serve.h"
#include "kv/keycodec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

int serve_url_decode(const char *s, size_t n, char **out)
{
    char *d = malloc(n + 1);
    if (!d)
        return -ENOMEM;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%' && i + 2 < n &&
            key_hexdigit((unsigned char)s[i + 1]) >= 0 &&
            key_hexdigit((unsigned char)s[i + 2]) >= 0) {
            c = key_hexdigit((unsigned char)s[i + 1]) * 16 + key_hexdigit((unsigned char)s[i + 2]);
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (c == 0) { /* no key or prefix may hold a NUL byte */
            free(d);
            return -EINVAL;
        }
        d[j++] = (char)c;
    }
    d[j] = '\0';
    *out = d;
    return 0;
}

int serve_query_get(const char *q, const char *name, char **out)
{
    size_t nlen = strlen(name);
    while (q && *q) {
        const char *end = strchr(q, '&');
        size_t len = end ? (size_t)(end - q) : strlen(q);
        const char *eq = memchr(q, '=', len);
        size_t klen = eq ? (size_t)(eq - q) : len;
        /* parse_qs drops pairs without '=' and pairs with a blank value */
        if (eq && klen == nlen && memcmp(q, name, nlen) == 0 && len > klen + 1)
            return serve_url_decode(eq + 1, len - klen - 1, out);
        q = end ? end + 1 : NULL;
    }
    return -ENOENT;
}

/* 1 when s[0..n) is a segment kv accepts: non-empty, not "." or "..". */
static int segment_ok(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    if (s[0] == '.' && (n == 1 || (n == 2 && s[1] == '.')))
        return 0;
    return 1;
}

/* 0 when every '/'-separated segment of s[0..n) is acceptable; n == 0 is the root. */
static int path_ok(const char *s, size_t n)
{
    size_t start = 0;
    if (n == 0)
        return 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '/') {
            if (!segment_ok(s + start, i - start))
                return -EINVAL;
            start = i + 1;
        }
    }
    return 0;
}

int serve_key_rel(char *key, int *is_dir)
{
    size_t n = strlen(key);
    *is_dir = 0;
    if (n > 0 && key[n - 1] == '/') {
        key[--n] = '\0';
        *is_dir = 1;
    }
    if (n == 0)
        return -EINVAL;
    return path_ok(key, n);
}

/* A growable array of owned strings. */
struct strvec {
    char **v;
    size_t n, cap;
};

/* Appends the concatenation a b c d. */
static int strvec_push(struct strvec *s, const char *a, const char *b, const char *c,
                       const char *d)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        char **v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c), ld = strlen(d);
    char *str = malloc(la + lb + lc + ld + 1);
    if (!str)
        return -ENOMEM;
    memcpy(str, a, la);
    memcpy(str + la, b, lb);
    memcpy(str + la + lb, c, lc);
    memcpy(str + la + lb + lc, d, ld + 1);
    s->v[s->n++] = str;
    return 0;
}

static void strvec_free(struct strvec *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names as a sorted JSON array. A name that is not UTF-8 cannot go into JSON (and
 * Asya's runtime could not send it back): it is left out with one warning per listing, so
 * that a single planted name never makes the listing fail for every client. */
static json_t *strvec_json(struct strvec *s)
{
    json_t *a = json_array();
    if (!a)
        return NULL;
    if (s->n) /* qsort's base is nonnull: an empty vector has v == NULL */
        qsort(s->v, s->n, sizeof *s->v, cmp_str);
    size_t skipped = 0;
    const char *first = NULL;
    for (size_t i = 0; i < s->n; i++) {
        json_t *j = json_string(s->v[i]);
        if (!j) { /* not UTF-8 (or out of memory: the same answer) */
            if (!skipped++)
                first = s->v[i];
            continue;
        }
        if (json_array_append_new(a, j) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    if (skipped) {
        char shown[200];
        size_t o = 0;
        for (const unsigned char *p = (const unsigned char *)first; *p && o + 5 < sizeof shown;
             p++)
            o += (size_t)snprintf(shown + o, sizeof shown - o, *p < 0x80 && *p >= 0x20 ? "%c"
                                  : "\\x%02X", *p);
        log_at(LOG_WARN, "serve: a listing left out %zu name(s) that are not UTF-8 (JSON "
               "cannot carry them), the first: %s", skipped, shown);
    }
    return a;
}

/* Collects the entries of directory dir ("" for the root) whose names start with start (NULL
 * for all): files into keys, subdirectories into prefixes as "dir/" or, when recursive,
 * walked; a name that is both goes into both. A dir that is missing or a value lists nothing (as an object store would). */
static int list_dir(const kv_ops *ops, kv_mount *m, const char *dir, const char *start,
                    int recursive, struct strvec *keys, struct strvec *prefixes)
{
    kv_list l = { 0 };
    int r = ops->list(m, dir, &l);
    if (r == -ENOENT || r == -ENOTDIR)
        return 0;
    if (r < 0)
        return r;
    size_t slen = start ? strlen(start) : 0;
    const char *sep = dir[0] ? "/" : "";
    for (size_t i = 0; i < l.n && r == 0; i++) {
        const kv_dirent *e = &l.v[i];
        if (slen && strncmp(e->name, start, slen) != 0)
            continue;
        if (!e->is_dir)
            r = strvec_push(keys, dir, sep, e->name, "");
        if (r < 0 || (!e->is_dir && !e->also_dir)) {
            continue; /* (a value that is a directory too is both, as in an object store) */
        } else if (!recursive) {
            r = strvec_push(prefixes, dir, sep, e->name, "/");
        } else {
            struct strvec sub = { 0 };
            r = strvec_push(&sub, dir, sep, e->name, "");
            if (r == 0)
                r = list_dir(ops, m, sub.v[0], NULL, 1, keys, prefixes);
            strvec_free(&sub);
        }
    }
    ops->release_list(&l);
    return r;
}

int serve_list(const kv_ops *ops, kv_mount *m, const char *prefix, int recursive,
               json_t **out)
{
    /* prefix = "dir/start": list dir, keep the names beginning with start. */
    const char *slash = strrchr(prefix, '/');
    size_t dlen = slash ? (size_t)(slash - prefix) : 0;
    if (slash && path_ok(prefix, dlen) != 0)
        return -EINVAL;
    char *dir = strndup(prefix, dlen);
    if (!dir)
        return -ENOMEM;
    struct strvec keys = { 0 }, prefixes = { 0 };
    int r = list_dir(ops, m, dir, slash ? slash + 1 : prefix, recursive, &keys, &prefixes);
    free(dir);
    json_t *o = NULL;
    if (r == 0) {
        json_t *k = strvec_json(&keys), *p = strvec_json(&prefixes);
        o = (k && p) ? json_pack("{s:o, s:o}", "keys", k, "prefixes", p) : NULL;
        if (!o) {
            if (!k || !p) { /* json_pack steals both, even when it fails */
                json_decref(k);
                json_decref(p);
            }
            r = -ENOMEM;
        }
    }
    strvec_free(&keys);
    strvec_free(&prefixes);
    *out = o;
    return r;
}
