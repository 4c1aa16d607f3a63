/* mounts.h: the mount table, built once at start from the environment (SPEC "Configuration").
 *
 * The table is filled by mounts_parse() before any hook can use it and is read-only
 * afterwards, so lookups need no lock. Strings in it are malloc()ed once by mounts_parse()
 * and freed by mounts_free().
 */
#ifndef ASYA_SHIM_MOUNTS_H
#define ASYA_SHIM_MOUNTS_H

#include <stddef.h>

#define MOUNTS_MAX 64

struct mount {
    char *name;        /* Asya mount name ("" for STATE_MOUNT) */
    char *path;        /* normalised absolute mount path, never "/" */
    size_t pathlen;
    char *bucket;      /* bucket= option or NATS_KV_BUCKET; NULL when neither */
    char *prefix;      /* prefix= option or STATE_PREFIX; NULL for none */
    unsigned kv_flags; /* KV_MOUNT_WATCH (kv/kv.h) for read=watch, KV_MOUNT_META for read=meta
                          (or STATE_READ_CACHE=watch|meta) */
    int err;           /* 0, or the negative errno every operation under the mount fails with:
                          -ENOTSUP for a write mode other than buffered, -EIO for bad
                          configuration (missing bucket, overlap, malformed entry) */
};

struct mount_table {
    struct mount m[MOUNTS_MAX];
    int n;
    int too_many;       /* more than MOUNTS_MAX were given: every mount fails with EIO */
    char **extra;       /* the paths past MOUNTS_MAX (malloc()ed): found by mounts_find as */
    int nextra;         /* m[0], failing like every mount, never left to the local disk */
    int warnings;       /* settings ignored with a warning (unknown options, read=other,
                           STATE_READ_CACHE=other): not problems, but `check` reports them */
};

struct mount_env {     /* the environment's values; NULL when unset */
    const char *proxy_mounts;  /* ASYA_STATE_PROXY_MOUNTS */
    const char *state_mount;   /* STATE_MOUNT */
    const char *bucket;        /* NATS_KV_BUCKET */
    const char *prefix;        /* STATE_PREFIX */
    const char *read_cache;    /* STATE_READ_CACHE */
};

/* Builds the mount table from env by SPEC "Configuration": ASYA_STATE_PROXY_MOUNTS entries
 * `name:path[:opts]` joined by ';' (opts `k=v` joined by ','; write=buffered is the only
 * write mode; bucket=, prefix=, read=watch|meta; unknown options ignored with one warning line each, counted in t->warnings; first matching mount
 * wins so order is kept), else STATE_MOUNT, default "/state". Each problem is reported with
 * ONE log_at(LOG_ERROR, ...) line naming the variable (and the entry) and marks the
 * affected mount(s) with err; when ASYA_STATE_PROXY_MOUNTS does not parse at all, the table
 * is one mount "/state" with err -EIO (operations there fail, never fall to local disk).
 * Overlapping key spaces (same bucket, one prefix equal to or a '.'-prefix of the other, or
 * one without a prefix) mark both mounts -EIO. Allocates with malloc (once, at start).
 * Returns the number of problems reported (0 when all is well). */
int mounts_parse(const struct mount_env *env, struct mount_table *t);

/* The kv mount flag of a read cache mode: "watch" KV_MOUNT_WATCH, "meta" KV_MOUNT_META; 0 for
 * anything else (the caller warns). */
unsigned mounts_read_mode(const char *v, size_t n);

/* Frees every string of the table and sets n to 0. Safe on a zeroed or freed table. */
void mounts_free(struct mount_table *t);

/* The first mount whose path contains the normalised absolute path (path_below), or NULL;
 * *rel gets the part below it. */
const struct mount *mounts_find(const struct mount_table *t, const char *path, const char **rel);

#endif
