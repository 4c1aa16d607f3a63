/* kv.h: the boundary between shim/ (libc hooks) and kv/ (NATS JetStream Key-Value).
 *
 * shim/ never sees NATS and kv/ never sees a hook. The shim dlopen()s the backend
 * (build/libasya-state-kv.so) on the first operation on a mount path and calls
 * kv_backend() once to get the operation table below; the sidecar and the CLI link the
 * same kv/ code directly and call kv_backend() too.
 *
 * Conventions, for every function in the table:
 *   - returns 0 or a negative errno (the contract's table: -ENOENT, -EEXIST, -EFBIG,
 *     -ENAMETOOLONG, -ECONNREFUSED, -ETIMEDOUT, -EACCES, -EIO, -ENOTEMPTY, -ENOTDIR...);
 *     never touches errno; logs one stderr line at warn or above for every failure except
 *     the expected ones (-ENOENT on get/stat, -EEXIST on commit is logged at info);
 *   - `rel` is a path below the mount, '/'-separated, already normalised by the caller:
 *     no leading or trailing '/', no empty, "." or ".." segment; "" is the mount root.
 *     kv/ maps it to a key (prefix, escaping) and refuses a key over KV_KEY_MAX with
 *     -ENAMETOOLONG before anything is sent;
 *   - thread-safe; safe to call from any thread; no lock is held across a network request,
 *     except that connecting (once per process, and again after nats.c gave a connection
 *     up) is serialised: callers arriving meanwhile wait for it (kv/conn.c);
 *   - memory handed out (kv_value.data, kv_list) is freed with kv_ops.release().
 *
 * Revision memory (the contract's compare-and-set rules) lives in kv/: get() remembers the
 * revision it read (or "absent"), commit() consults it and remembers the new revision, a
 * conflict or a remove() forgets it. Its scope is chosen once per process by kv_init():
 * per thread (the shim) or per process (the sidecar).
 */
#ifndef ASYA_KV_H
#define ASYA_KV_H

#include <stddef.h>
#include <stdint.h>

#define KV_ABI 7
#define KV_KEY_MAX 1024          /* longest key (prefix + '.' + escaped rel) we send */

typedef struct kv_mount kv_mount; /* one bucket + prefix, bound lazily; opaque */

/* A value read whole. data is NULL when len is 0. Release with kv_ops.release_value. */
typedef struct kv_value {
    const void *data;
    size_t len;
    uint64_t rev;       /* the key's revision */
    int64_t mtime_ns;   /* the revision's time, ns since the epoch */
    void *owner;        /* kv/'s: what holds data (the message it arrived in), or NULL */
} kv_value;

/* What stat needs; no value is transferred when possible. */
typedef struct kv_stat {
    int is_dir;         /* 1: a directory (its marker key exists); 0: a value */
    uint64_t size;      /* value length; 0 for a directory */
    uint64_t rev;       /* 0 for a directory without a marker */
    int64_t mtime_ns;
} kv_stat;

/* One level of a listing: names decoded, in key order, no marker keys as files. */
typedef struct kv_dirent {
    char *name;         /* one path segment, NUL-terminated */
    int is_dir;
    int also_dir;       /* a value (is_dir 0) whose name is a directory too: keys below it.
                           Only other clients and the sidecar (as an object store lets them)
                           write both; a listing of one entry per name shows the value */
} kv_dirent;

typedef struct kv_list {
    kv_dirent *v;
    size_t n;
} kv_list;

/* kv_init flags */
enum {
    KV_REVS_PER_THREAD = 0,  /* revision memory per (thread, mount, key): the shim */
    KV_REVS_PER_PROCESS = 1, /* one memory for the whole process, with the reads each
                                revision had: the sidecar (its clients are anonymous) */
    KV_REVS_PER_KEY = 2,     /* one memory for the whole process, one revision per key (the
                                last read or committed): the sidecar of one sequential client */
};

/* mount flags */
enum {
    KV_MOUNT_WATCH = 1,      /* read=watch: a watcher-fed mirror of keys and values serves
                                gets, stats, lookups and listings (read cache) */
    KV_MOUNT_META = 2,       /* read=meta: the same mirror without values: stats, lookups,
                                listings and missing keys; a present value is a direct Get */
};

/* commit flags */
enum {
    KV_COMMIT_EXCL = 1,      /* create-only, whatever the memory says (O_EXCL, If-None-Match) */
    KV_COMMIT_EXPECT = 2,    /* update expecting *rev_out exactly, whatever the memory says
                                (If-Match); *rev_out then gets the new revision */
};

/* watch flags */
enum {
    KV_WATCH_INITIAL = 1,    /* first the current entry of every watched key (initial = 1) */
};

/* What an entry of a key's history, or a change seen by a watch, did. */
enum { KV_OP_PUT = 0, KV_OP_DEL = 1, KV_OP_PURGE = 2 };

/* One entry of history() or watch(); valid only during the callback. */
typedef struct kv_event {
    const char *rel;    /* the path below the mount, decoded ("" for the root's marker) */
    int is_dir;         /* a directory marker ("rel/") */
    int op;             /* KV_OP_PUT, KV_OP_DEL or KV_OP_PURGE */
    uint64_t rev;
    int64_t mtime_ns;   /* the revision's time, ns since the epoch */
    const void *data;   /* history: the value (NULL when len is 0); watch: always NULL */
    size_t len;         /* history: the value's length; watch: 0 */
    int initial;        /* watch: one of the current entries delivered first */
} kv_event;

/* Sentinel revision for kv_ops.remember()/recall(): the key was read and found absent. */
#define KV_REV_ABSENT UINT64_MAX

typedef struct kv_ops {
    unsigned abi;        /* KV_ABI */

    /* Reads the connection configuration (NATS_URL, NATS_CREDS_FILE, NATS_NKEY_SEED_FILE,
     * NATS_TLS_*, NATS_TIMEOUT_MS, ASYA_STATE_LOG) from the environment and chooses the
     * revision memory's scope. Connects nothing. Call once; later calls are no-ops.
     * -EINVAL with one stderr line naming the variable when it is missing or malformed. */
    int (*init)(unsigned flags);

    /* A handle for bucket + prefix (prefix NULL or "" for none). Connects nothing; the
     * connection is made and the bucket bound on first use. Handles live until exit. */
    int (*mount)(const char *bucket, const char *prefix, unsigned flags, kv_mount **out);

    /* What a local disk checks at open, without reading rel: rel maps to a valid key
     * (-ENAMETOOLONG: a segment over NAME_MAX or a key over KV_KEY_MAX, nothing sent), the
     * connection is up (connecting first if needed: -ECONNREFUSED, -EACCES, -ETIMEDOUT,
     * -EIO for bad configuration) and m's bucket is bound (-EIO when it is missing, one log
     * line per process). Once connected and bound it sends nothing. Remembers nothing. */
    int (*bind)(kv_mount *m, const char *rel);

    /* Reads rel whole into out (caller releases out->data). Remembers out->rev, or
     * "absent" on -ENOENT (missing or deleted). */
    int (*get)(kv_mount *m, const char *rel, kv_value *out);

    /* Size, revision and type of rel without remembering anything. rel "" is the root,
     * always a directory. -ENOENT when neither a key nor a directory. */
    int (*stat)(kv_mount *m, const char *rel, kv_stat *out);

    /* Whether rel is a directory (its marker exists): 1, 0, or a negative errno. One Get of
     * the marker (none when the read cache answers): what open needs after get found no
     * value, where stat would ask for the value again. rel "" is the root: 1. */
    int (*isdir)(kv_mount *m, const char *rel);

    /* Writes data as rel's whole value by the contract's rules: EXCL or remembered
     * "absent" -> create-only; remembered revision r -> update expecting r; nothing
     * remembered -> put. *rev_out (may be NULL) gets the new revision, which is
     * remembered. -EEXIST on a conflict (memory forgotten), -EFBIG over the size limit,
     * -ETIMEDOUT when the outcome cannot be known (never 0 for a write that did not land). */
    int (*commit)(kv_mount *m, const char *rel, const void *data, size_t len,
                  unsigned flags, uint64_t *rev_out);

    /* Deletes rel (a value; never a directory marker). -ENOENT if missing. Forgets it. */
    int (*remove)(kv_mount *m, const char *rel);

    /* The names one level below directory rel ("" for the root). -ENOENT when rel is not a
     * directory, -ENOTDIR when it is a value. Writes the markers of directories it finds only
     * through keys below them, and removes old delete markers it passed over (kv/tombs.c). */
    int (*list)(kv_mount *m, const char *rel, kv_list *out);

    /* Directory markers: mkdir creates "rel/" (-EEXIST when the directory exists, -ENOENT
     * when the parent does not); rmdir deletes it (-ENOTEMPTY when keys remain below,
     * -ENOENT when there is no such directory, -ENOTDIR for a value). */
    int (*mkdir)(kv_mount *m, const char *rel);
    int (*rmdir)(kv_mount *m, const char *rel);

    /* The key's current revision on the server, read fresh; changes no memory. */
    int (*version)(kv_mount *m, const char *rel, uint64_t *rev);

    /* The revision memory, for descriptors that travel across exec: recall gives the
     * remembered revision (KV_REV_ABSENT for "absent"), -ENOENT when nothing is
     * remembered, -ESTALE when what was remembered may have been forgotten for room (a
     * commit then fails with EEXIST, see kv/revmem.c); remember sets it (0 forgets). Local
     * only, never a request. */
    int (*recall)(kv_mount *m, const char *rel, uint64_t *rev);
    void (*remember)(kv_mount *m, const char *rel, uint64_t rev);

    /* Frees what get() and list() handed out (pass &value or &list). */
    void (*release_value)(kv_value *v);
    void (*release_list)(kv_list *l);

    /* In a forked child: drop the parent's connection without touching it (no request, no
     * thread join); the next operation connects again. */
    void (*after_fork_child)(void);

    /* The directory that would hold rel exists: 0 (always for the mount root), -ENOENT
     * when it does not, -ENOTDIR when it is a value; -EISDIR when rel itself is a directory
     * this process knows. Directory markers this process has seen or written are
     * remembered, so a create in a known directory sends nothing. */
    int (*parent)(kv_mount *m, const char *rel);

    /* Writes the missing markers of rel's ancestor directories, create-only (concurrent
     * writers do not conflict) and remembered: for writers that never make directories
     * (the sidecar's PUT). 0 or -errno. */
    int (*mkparents)(kv_mount *m, const char *rel);

    /* Every value whose rel starts with rel_prefix (a plain string prefix: "run-" matches
     * "run-1/result"; "" is every value of the mount), directory markers and deleted keys
     * left out, handed to fn one at a time in no particular order: rel decoded, data valid
     * only during the call (NULL when len is 0). fn returns 0 to go on or a negative errno,
     * which stops the scan and is returned. Served from the read cache's mirror when the mount has one
     * and it is fresh (no request; the mirror's lock is held during the whole scan, so fn
     * must not call kv), else from one ordered-consumer pass over the mount's keys (values
     * included, filtered here: a cost in the number and size of the mount's values, not the
     * prefix's). Remembers each value's revision as a read only with KV_REVS_PER_KEY (the
     * sidecar's one-client mode, as Asya's query does). -ECONNREFUSED, -ETIMEDOUT, -EIO as for get. */
    int (*scan)(kv_mount *m, const char *rel_prefix,
                int (*fn)(void *arg, const char *rel, const void *data, size_t len),
                void *arg);

    /* The NATS KV key of rel (marker 1: its directory marker, "<key>/"), NUL-terminated
     * into out. Local, never a request. -ENAMETOOLONG over KV_KEY_MAX or outsz. */
    int (*key)(kv_mount *m, const char *rel, int marker, char *out, size_t outsz);

    /* Every revision of rel's value the bucket keeps (its history setting), oldest first,
     * delete and purge markers included, handed to fn one at a time (ev->data valid only
     * during the call). fn returns 0 to go on, or a value that stops the walk and is
     * returned. -ENOENT when the key has no stored entry; others as for get. Remembers
     * nothing. */
    int (*history)(kv_mount *m, const char *rel,
                   int (*fn)(void *arg, const kv_event *ev), void *arg);

    /* Watches rel and everything below it ("" the whole mount): fn gets one event per
     * change, as the server delivers it (names decoded; directory markers with is_dir;
     * keys this connector cannot decode skipped), from the calling thread. With
     * KV_WATCH_INITIAL the current entry of every watched key comes first (initial 1).
     * Runs until fn returns non-zero (returned). Survives reconnects and server restarts:
     * nats.c 3.4.1 watchers go silent after a reconnect, so the watcher is recreated on
     * every new connection generation and revisions already delivered are skipped (a
     * change overwritten while disconnected is seen as its latest revision only; a delete
     * whose marker a scan removed meanwhile, kv/tombs.c, is not seen at all). Errors
     * in creating the first watcher (-ECONNREFUSED, -EIO for a missing bucket...) are
     * returned. Remembers nothing. */
    int (*watch)(kv_mount *m, const char *rel, unsigned flags,
                 int (*fn)(void *arg, const kv_event *ev), void *arg);

    /* The largest value a commit of rel can carry, in bytes, into *max: the least of the
     * bucket's max value size, the server's max_payload less our headers, the 32 MiB
     * JetStream record less the subject and headers, and INT_MAX; a commit of more is
     * -EFBIG. Connects and binds like bind; the bucket's limits are read once per bucket
     * and process (one request), after that nothing is sent. For write() and ftruncate()
     * to fail with EFBIG where a local disk would, instead of at the close. */
    int (*limit)(kv_mount *m, const char *rel, uint64_t *max);
} kv_ops;

/* The backend's only exported symbol. */
const kv_ops *kv_backend(void);

#endif
