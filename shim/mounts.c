/* mounts.c: the mount table from the environment (see mounts.h, SPEC "Configuration").
 *
 * Runs once, at start, before any hook uses the table; the table is read-only afterwards.
 * Each mount's strings live in one malloc()ed block that starts at m->name (name, path,
 * bucket, prefix, in that order), so mounts_free() frees m->name only. Every problem is one
 * log_at(LOG_ERROR) line naming the variable; the mount it affects gets err, so operations
 * there fail instead of reaching the local disk. Only a mount that cannot be represented at
 * all (no path, the path "/", out of memory) is left out, reported; past MOUNTS_MAX only
 * the path is kept (extra), and the whole configuration is refused.
 * Deliberately no dependency on kv/: the bucket and prefix checks are local.
 */
#include "shim/mounts.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "kv/kv.h"
#include "shim/path.h"

#define MOUNTS_DEFAULT "/state"
#define MOUNTS_VAR "ASYA_STATE_PROXY_MOUNTS"

/* A slice of an environment string (not NUL-terminated). */
struct span {
    const char *p;
    size_t n;
};

/* What one entry or STATE_MOUNT asks for, before it is copied into the table. */
struct mount_spec {
    struct span name;
    char path[PATH_MAX];
    const char *bucket;   /* NUL-terminated or NULL; bucket_n bytes */
    size_t bucket_n;
    const char *prefix;
    size_t prefix_n;
    unsigned kv_flags;
    int err;              /* the first problem found wins */
    int bad_env_bucket;   /* NATS_KV_BUCKET is malformed: -EIO unless bucket= overrides it */
    int bad_env_prefix;   /* STATE_PREFIX is malformed: -EIO unless prefix= overrides it */
    int *warnings;        /* the table's count of ignored settings (NULL: not counted) */
};

static void mounts_fail(struct mount_spec *s, int err)
{
    if (s->err == 0)
        s->err = err;
}

/* The errors that depend on the whole entry: a bad variable not overridden, no bucket.
 * Returns the problems reported (the bad variables were reported once, by
 * mounts_defaults()). */
static int mounts_finish(struct mount_spec *s, const char *var)
{
    if (s->bad_env_bucket || s->bad_env_prefix) {
        mounts_fail(s, -EIO);
        return 0;
    }
    if (!s->bucket && s->err == 0) {
        if (s->name.n)
            log_at(LOG_ERROR, "%s: mount %s: no bucket (set NATS_KV_BUCKET or bucket=); "
                   "operations under it fail with EIO", var, s->path);
        else /* the single mount: the one variable the user has to set */
            log_at(LOG_ERROR, "NATS_KV_BUCKET is not set: the mount %s has no bucket; "
                   "operations under it fail with EIO", s->path);
        s->err = -EIO;
        return 1;
    }
    return 0;
}

static int mounts_isspace(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static struct span mounts_trim(const char *p, size_t n)
{
    while (n && mounts_isspace(p[0]))
        p++, n--;
    while (n && mounts_isspace(p[n - 1]))
        n--;
    return (struct span){ p, n };
}

static int mounts_eq(struct span s, const char *lit)
{
    size_t n = strlen(lit);
    return s.n == n && memcmp(s.p, lit, n) == 0;
}

#define MOUNTS_READ_MODES (KV_MOUNT_WATCH | KV_MOUNT_META)

unsigned mounts_read_mode(const char *v, size_t n)
{
    struct span s = { v, n };
    return mounts_eq(s, "watch") ? KV_MOUNT_WATCH : mounts_eq(s, "meta") ? KV_MOUNT_META : 0;
}

/* NATS bucket names: [A-Za-z0-9_-]+. */
static int mounts_bucket_ok(const char *b, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* A prefix must be a valid key itself: [-/_=.A-Za-z0-9], no leading, trailing or double '.'. */
static int mounts_prefix_ok(const char *p, size_t n)
{
    if (n == 0 || p[0] == '.' || p[n - 1] == '.' || n > KV_KEY_MAX / 2)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '.' ? (i + 1 < n && p[i + 1] == '.')
                     : !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '/' ||
                         c == '='))
            return 0;
    }
    return 1;
}

/* Copies spec into t->m[t->n]. Returns 0, or 1 (one problem, reported) when it cannot. */
static int mounts_add(struct mount_table *t, const struct mount_spec *s, const char *var)
{
    size_t plen = strlen(s->path);
    if (t->n >= MOUNTS_MAX) {
        if (!t->too_many)
            log_at(LOG_ERROR, "%s: more than %d mounts: the configuration is refused; "
                   "operations under every mount fail with EIO", var, MOUNTS_MAX);
        t->too_many = 1;
        char **grown = realloc(t->extra, (size_t)(t->nextra + 1) * sizeof *grown);
        if (grown) {
            t->extra = grown;
            if ((grown[t->nextra] = strdup(s->path)) != NULL)
                t->nextra++;
        }
        return 1;
    }
    size_t size = s->name.n + 1 + plen + 1 + s->bucket_n + 1 + s->prefix_n + 1;
    char *block = malloc(size);
    if (!block) {
        log_at(LOG_ERROR, "%s: out of memory for the mount %s", var, s->path);
        return 1;
    }
    struct mount *m = &t->m[t->n++];
    char *w = block;
    m->name = w;
    memcpy(w, s->name.p, s->name.n);
    w += s->name.n;
    *w++ = '\0';
    m->path = w;
    memcpy(w, s->path, plen + 1);
    w += plen + 1;
    m->pathlen = plen;
    m->bucket = NULL;
    if (s->bucket) {
        m->bucket = w;
        memcpy(w, s->bucket, s->bucket_n);
        w += s->bucket_n;
        *w++ = '\0';
    }
    m->prefix = NULL;
    if (s->prefix && s->prefix_n) {
        m->prefix = w;
        memcpy(w, s->prefix, s->prefix_n);
        w[s->prefix_n] = '\0';
    }
    m->kv_flags = s->kv_flags;
    m->err = s->err;
    return 0;
}

/* Fills s->path from the configured path p (n bytes). Returns 0, or 1 when the path is
 * unusable as a mount (reported): the caller then leaves the entry out. A relative path is
 * taken from "/" and marks the mount -EIO (reported, counted through *problems). */
static int mounts_path(struct mount_spec *s, struct span p, const char *var, int *problems)
{
    char raw[PATH_MAX];
    if (p.n == 0 || p.n >= sizeof raw) {
        log_at(LOG_ERROR, "%s: mount '%.*s': missing or too long path", var, (int)s->name.n,
               s->name.p);
        return 1;
    }
    memcpy(raw, p.p, p.n);
    raw[p.n] = '\0';
    int r = path_normalize("/", raw, s->path, sizeof s->path);
    if (r < 0 || r == 1) {
        log_at(LOG_ERROR, "%s: mount '%.*s': path '%s' cannot be a mount", var,
               (int)s->name.n, s->name.p, raw);
        return 1;
    }
    if (raw[0] != '/') {
        log_at(LOG_ERROR, "%s: mount '%.*s': path '%s' is not absolute; operations under %s "
               "fail with EIO", var, (int)s->name.n, s->name.p, raw, s->path);
        mounts_fail(s, -EIO);
        (*problems)++;
    }
    return 0;
}

/* One warning line about an ignored setting, counted in the table. */
static void mounts_warn(struct mount_spec *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void mounts_warn(struct mount_spec *s, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log_at(LOG_WARN, "%s", line);
    if (s->warnings)
        (*s->warnings)++;
}

/* Applies one k=v option of entry s. Returns the number of problems reported (0 or 1). */
static int mounts_option(struct mount_spec *s, struct span k, struct span v)
{
    if (mounts_eq(k, "write")) {
        if (mounts_eq(v, "buffered"))
            return 0;
        log_at(LOG_ERROR, MOUNTS_VAR ": mount '%.*s': write=%.*s is not supported (only "
               "write=buffered); operations under %s fail with ENOTSUP", (int)s->name.n,
               s->name.p, (int)v.n, v.p, s->path);
        mounts_fail(s, -ENOTSUP);
        return 1;
    }
    if (mounts_eq(k, "bucket")) {
        if (!mounts_bucket_ok(v.p, v.n)) {
            log_at(LOG_ERROR, MOUNTS_VAR ": mount '%.*s': bad bucket name '%.*s'; operations "
                   "under %s fail with EIO", (int)s->name.n, s->name.p, (int)v.n, v.p, s->path);
            mounts_fail(s, -EIO);
            return 1;
        }
        s->bucket = v.p;
        s->bucket_n = v.n;
        s->bad_env_bucket = 0;
        return 0;
    }
    if (mounts_eq(k, "prefix")) {
        if (v.n && !mounts_prefix_ok(v.p, v.n)) {
            log_at(LOG_ERROR, MOUNTS_VAR ": mount '%.*s': bad key prefix '%.*s'; operations "
                   "under %s fail with EIO", (int)s->name.n, s->name.p, (int)v.n, v.p, s->path);
            mounts_fail(s, -EIO);
            return 1;
        }
        s->prefix = v.p; /* "prefix=" (empty) means no prefix for this mount */
        s->prefix_n = v.n;
        s->bad_env_prefix = 0;
        return 0;
    }
    if (mounts_eq(k, "read")) {
        unsigned f = mounts_read_mode(v.p, v.n);
        if (f)
            s->kv_flags = (s->kv_flags & ~(unsigned)MOUNTS_READ_MODES) | f;
        else
            mounts_warn(s, MOUNTS_VAR ": mount '%.*s': read=%.*s ignored (only read=watch or "
                        "read=meta)", (int)s->name.n, s->name.p, (int)v.n, v.p);
        return 0;
    }
    /* Ignored, as Asya's runtime does, but never silently: a typo (prefx=) would else put
     * the keys where nobody looks. */
    mounts_warn(s, MOUNTS_VAR ": mount '%.*s': unknown option '%.*s' ignored (known: write, "
                "bucket, prefix, read)", (int)s->name.n, s->name.p, (int)k.n, k.p);
    return 0;
}

/* Parses one trimmed, non-empty entry name:path[:opts] into the table. Returns the number
 * of problems reported. */
static int mounts_entry(struct span e, const struct mount_spec *dflt, struct mount_table *t)
{
    struct mount_spec s = *dflt;
    s.warnings = &t->warnings;
    const char *end = e.p + e.n;
    const char *c1 = memchr(e.p, ':', e.n);
    if (!c1) {
        log_at(LOG_ERROR, MOUNTS_VAR ": entry '%.*s' is not name:path[:options]; ignored",
               (int)e.n, e.p);
        return 1;
    }
    s.name = mounts_trim(e.p, (size_t)(c1 - e.p));
    const char *c2 = memchr(c1 + 1, ':', (size_t)(end - c1 - 1));
    const char *pend = c2 ? c2 : end;
    int problems = 0;
    if (mounts_path(&s, mounts_trim(c1 + 1, (size_t)(pend - c1 - 1)), MOUNTS_VAR, &problems))
        return problems + 1;
    for (const char *o = c2 ? c2 + 1 : end; o < end;) {
        const char *oend = memchr(o, ',', (size_t)(end - o));
        if (!oend)
            oend = end;
        const char *eq = memchr(o, '=', (size_t)(oend - o));
        if (eq)
            problems += mounts_option(&s, mounts_trim(o, (size_t)(eq - o)),
                                      mounts_trim(eq + 1, (size_t)(oend - eq - 1)));
        o = oend + 1;
    }
    problems += mounts_finish(&s, MOUNTS_VAR);
    return problems + mounts_add(t, &s, MOUNTS_VAR);
}

/* 1 when the key spaces of a and b could share a key. */
static int mounts_overlap(const struct mount *a, const struct mount *b)
{
    if (!a->bucket || !b->bucket || strcmp(a->bucket, b->bucket) != 0)
        return 0;
    if (!a->prefix || !b->prefix)
        return 1;
    size_t la = strlen(a->prefix), lb = strlen(b->prefix);
    const char *s = la <= lb ? a->prefix : b->prefix, *l = la <= lb ? b->prefix : a->prefix;
    size_t ls = la <= lb ? la : lb;
    return strncmp(s, l, ls) == 0 && (l[ls] == '\0' || l[ls] == '.');
}

/* Marks -EIO every mount whose key space overlaps another's (both of each pair), judged on
 * the mounts that were usable before this check. Returns the problems reported. */
static int mounts_check_overlaps(struct mount_table *t)
{
    int bad[MOUNTS_MAX] = { 0 }, problems = 0;
    for (int i = 0; i < t->n; i++) {
        for (int j = i + 1; j < t->n; j++) {
            const struct mount *a = &t->m[i], *b = &t->m[j];
            if (a->err || b->err)
                continue;
            if (mounts_overlap(a, b)) {
                log_at(LOG_ERROR, MOUNTS_VAR ": mounts %s and %s share key space (bucket %s, "
                       "prefixes %s and %s); operations under both fail with EIO", a->path,
                       b->path, a->bucket, a->prefix ? a->prefix : "(none)",
                       b->prefix ? b->prefix : "(none)");
                bad[i] = bad[j] = 1;
                problems++;
            } else if (path_below(b->path, a->path, a->pathlen)) {
                log_at(LOG_WARN, MOUNTS_VAR ": mount %s is inside %s, which comes first; it is "
                       "never used", b->path, a->path);
            }
        }
    }
    for (int i = 0; i < t->n; i++)
        if (bad[i])
            t->m[i].err = -EIO;
    return problems;
}

/* The defaults every mount starts from: NATS_KV_BUCKET, STATE_PREFIX, STATE_READ_CACHE. */
static int mounts_defaults(const struct mount_env *env, struct mount_spec *d)
{
    int problems = 0;
    memset(d, 0, sizeof *d);
    if (env->bucket && *env->bucket) {
        if (mounts_bucket_ok(env->bucket, strlen(env->bucket))) {
            d->bucket = env->bucket;
            d->bucket_n = strlen(env->bucket);
        } else {
            log_at(LOG_ERROR, "NATS_KV_BUCKET: bad bucket name '%s'", env->bucket);
            d->bad_env_bucket = 1;
            problems++;
        }
    }
    if (env->prefix && *env->prefix) {
        if (mounts_prefix_ok(env->prefix, strlen(env->prefix))) {
            d->prefix = env->prefix;
            d->prefix_n = strlen(env->prefix);
        } else {
            log_at(LOG_ERROR, "STATE_PREFIX: bad key prefix '%s'", env->prefix);
            d->bad_env_prefix = 1;
            problems++;
        }
    }
    if (env->read_cache && *env->read_cache) {
        d->kv_flags |= mounts_read_mode(env->read_cache, strlen(env->read_cache));
        if (!d->kv_flags)
            log_at(LOG_WARN, "STATE_READ_CACHE=%s ignored (only watch or meta)", env->read_cache);
    }
    return problems;
}

/* ASYA_STATE_PROXY_MOUNTS; returns the problems reported, -1 when it holds no entry. */
static int mounts_parse_proxy(const char *v, const struct mount_spec *d, struct mount_table *t)
{
    int problems = 0, entries = 0;
    for (const char *p = v; *p;) {
        const char *semi = strchr(p, ';');
        size_t n = semi ? (size_t)(semi - p) : strlen(p);
        struct span e = mounts_trim(p, n);
        if (e.n) {
            entries++;
            problems += mounts_entry(e, d, t);
        }
        p += n + (semi ? 1 : 0);
    }
    return entries ? problems : -1;
}

/* STATE_MOUNT (or "/state"): one mount named "". Returns the problems reported. */
static int mounts_parse_single(const char *v, const struct mount_spec *d, struct mount_table *t)
{
    struct mount_spec s = *d;
    int problems = 0;
    s.name = (struct span){ "", 0 };
    if (!v || !*v)
        v = MOUNTS_DEFAULT;
    if (mounts_path(&s, mounts_trim(v, strlen(v)), "STATE_MOUNT", &problems)) {
        problems++;
        strcpy(s.path, MOUNTS_DEFAULT);
        mounts_fail(&s, -EIO);
    }
    problems += mounts_finish(&s, "STATE_MOUNT");
    return problems + mounts_add(t, &s, "STATE_MOUNT");
}

int mounts_parse(const struct mount_env *env, struct mount_table *t)
{
    struct mount_spec d;
    memset(t, 0, sizeof *t);
    int problems = mounts_defaults(env, &d);
    if (env->read_cache && *env->read_cache &&
        !mounts_read_mode(env->read_cache, strlen(env->read_cache)))
        t->warnings++; /* mounts_defaults warned */
    int r = -1;
    if (env->proxy_mounts)
        r = mounts_parse_proxy(env->proxy_mounts, &d, t);
    if (r < 0) {
        problems += mounts_parse_single(env->state_mount, &d, t);
        return problems;
    }
    problems += r;
    if (t->n == 0) {
        /* Nothing usable: fail under /state rather than fall through to the local disk. */
        struct mount_spec s = d;
        s.name = (struct span){ "", 0 };
        strcpy(s.path, MOUNTS_DEFAULT);
        s.err = -EIO;
        log_at(LOG_ERROR, MOUNTS_VAR ": no usable mount; operations under " MOUNTS_DEFAULT
               " fail with EIO");
        return problems + 1 + mounts_add(t, &s, MOUNTS_VAR);
    }
    problems += mounts_check_overlaps(t);
    for (int i = 0; t->too_many && i < t->n; i++)
        t->m[i].err = -EIO; /* never some served and one silently local */
    return problems;
}

void mounts_free(struct mount_table *t)
{
    for (int i = 0; i < t->n; i++)
        free(t->m[i].name);
    for (int i = 0; i < t->nextra; i++)
        free(t->extra[i]);
    free(t->extra);
    memset(t, 0, sizeof *t);
}

const struct mount *mounts_find(const struct mount_table *t, const char *path, const char **rel)
{
    for (int i = 0; i < t->n; i++) {
        const char *r = path_below(path, t->m[i].path, t->m[i].pathlen);
        if (r) {
            if (rel)
                *rel = r;
            return &t->m[i];
        }
    }
    /* A refused configuration's mounts past MOUNTS_MAX: every mount fails alike (EIO). */
    for (int i = 0; t->too_many && t->n > 0 && i < t->nextra; i++) {
        const char *r = path_below(path, t->extra[i], strlen(t->extra[i]));
        if (r) {
            if (rel)
                *rel = r;
            return &t->m[0];
        }
    }
    return NULL;
}
