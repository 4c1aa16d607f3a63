/* internal.h: what the files of kv/ share, and nothing the shim sees.
 *
 *   config.c  the environment, read once (kv_config)
 *   nkey.c    the public key of an NKey seed file
 *   hygiene.c the guard around every call into nats.c (signals, rand() state)
 *   conn.c    the one connection;  bucket.c  the buckets bound on it, their streams' limits
 *   dial.c    helper threads for the connect (signals blocked), cutting nats.c's endless wait
 *   errmap.c  the one table from nats.c statuses / JetStream codes / texts to errno
 *   revmem.c  the revision memory
 *   walk.c    every key under a prefix: the one ordered consumer of listings, scans, mirrors
 *   cache.c   the watch-fed read cache of KV_MOUNT_WATCH/META mounts (a mirror per mount)
 *   mindex.c  a mirror's index: a node per key component, children lists, one hash table
 *   ops.c     bind, get, stat, commit, remove, version;  dirs.c  list, mkdir, rmdir, key scans
 *   ahead.c   a Get sent ahead of another request (one round trip for both)
 *   lane.c    requests whose replies go straight to the waiting thread (direct gets)
 *   tombs.c   the delete markers a key scan skips, and their removal
 *   watch.c   key, history, watch (for the CLI)
 *   backend.c the kv_ops table
 *
 * Lock order (a lock may be taken while holding the ones to its left, never the reverse):
 *   conn_mu (conn.c) -> rand_mu (hygiene.c);  bucket_mu (bucket.c), a connection's lane_mu
 *   (lane.c), revmem's mutex and msgid's mutex are leaves.
 *   caches_mu (cache.c) -> a mirror's mu (kv_cache.mu): taken without any other lock held
 *   and never held while taking conn_mu or calling into nats.c (rand_mu, via a guard, only
 *   around pthread_create under caches_mu).
 * No lock is ever held across a network request.
 * Every function returns 0 or a negative errno and never sets errno, unless it says so.
 */
#ifndef ASYA_KV_INTERNAL_H
#define ASYA_KV_INTERNAL_H

#include <nats/nats.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "kv/kv.h"

static inline int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- config.c ---- */
typedef struct kv_config {
    const char **urls;      /* NATS_URL split on ',' (may carry credentials: never log) */
    int nurls;
    char url_safe[512];     /* NATS_URL with credentials replaced by "***@", for messages */
    const char *creds_file; /* NATS_CREDS_FILE or NULL */
    const char *seed_file;  /* NATS_NKEY_SEED_FILE or NULL */
    const char *tls_ca, *tls_cert, *tls_key;
    int64_t timeout_ms;     /* NATS_TIMEOUT_MS, default 5000 */
    const char *user;       /* NATS_USER or NULL (with password: never log either secret) */
    const char *password;   /* NATS_PASSWORD or NULL; masked in every log line */
    const char *token;      /* NATS_TOKEN or NULL; masked in every log line */
} kv_config;

/* Reads the environment once (later calls return the first result). -EINVAL after one
 * stderr line naming the variable. *out stays valid until exit. */
int kv_config_get(const kv_config **out);

/* ---- nkey.c ---- */
/* Derives the public key ("U...", NUL-terminated) of the seed in seed_file. -EINVAL for a
 * malformed seed, -EIO when the file cannot be read or libcrypto lacks ed25519. */
int kv_nkey_public(const char *seed_file, char *pub, size_t pubsz);

/* ---- hygiene.c ---- */
typedef struct kv_guard {
    sigset_t mask;          /* the caller's mask, restored by guard_leave */
    int pipe_was_pending;   /* SIGPIPE was pending before: not ours to consume */
    int masked;             /* guard_enter changed the mask (guard_leave restores it) */
    int swapped;            /* guard_enter switched rand() to the private state */
} kv_guard;

/* How guard_enter guards a call into nats.c:
 *  GUARD_REQUEST  blocks SIGPIPE (only when the connection can raise it: TLS);
 *  GUARD_THREADS  blocks every signal: for calls that may create threads (they inherit the
 *                 mask): thread creation, a connection's end. nats.c 3.4.1 starts its
 *                 threads at nats_Open, the connect and the first request, all made by the
 *                 connect's helper thread (conn.c); the KV watchers used for listings,
 *                 history and watch are synchronous subscriptions, which start none, so
 *                 no wait on the server blocks a program thread's signals;
 *  GUARD_CONNECT  that, and a private rand() state: nats_Open and the connect call srand()
 *                 and rand() (thousands of times, in the caller's thread). Nothing else in
 *                 nats.c 3.4.1 that the kv/ code calls does (traced with an interposed
 *                 rand/random/srand over connect, watch, get, put, watcher destroy). */
enum { GUARD_REQUEST = 0, GUARD_THREADS = 1, GUARD_CONNECT = 3 };

/* Around every call into nats.c from a caller's thread, as how says. guard_leave consumes
 * a SIGPIPE raised meanwhile and restores the mask and the rand() state. Cannot fail. */
void guard_enter(kv_guard *g, int how);
void guard_leave(kv_guard *g);

/* Whether a write on the NATS connection can raise SIGPIPE: only through TLS (OpenSSL
 * writes with write(2)); nats.c writes plain sockets with MSG_NOSIGNAL. When it cannot,
 * guard_enter(g, GUARD_REQUEST) leaves the signal mask alone (four system calls fewer per
 * request).
 * Set by the connect, before the connection's first request. */
void guard_sigpipe_possible(int possible);
/* nats_Open once per process, keeping the program's SIGPIPE disposition. Call inside a
 * GUARD_CONNECT guard. */
int guard_nats_open(void);
void guard_after_fork_child(void);

/* ---- errmap.c ---- */
/* The errno for a failed nats.c call: s (not NATS_OK), jerr (0 if none) and the thread's
 * last nats.c error text. *why (may be NULL) gets a short static description. */
int kv_errmap(natsStatus s, jsErrCode jerr, const char **why);
/* 1 when a request failing with s may nevertheless have been applied by the server. */
int kv_outcome_unknown(natsStatus s);

/* ---- dial.c ---- */
/* Starts fn(arg) in a detached thread with every signal blocked; the caller's mask is
 * changed only around pthread_create. 0 or -errno (-EAGAIN: no thread). */
int dial_thread(void *(*fn)(void *), void *arg);
/* The TCP sockets open when a connect attempt starts (n -1: unknown, then nothing is cut). */
#define DIAL_BASELINE_MAX 256
typedef struct dial_sockets {
    int n;
    ino_t ino[DIAL_BASELINE_MAX];
} dial_sockets;
void dial_baseline(dial_sockets *b);
/* When thread tid spins in nats.c 3.4.1's connect past its deadline, shuts down the one new
 * socket (not in b) connected to a server URL's address and port, so the connect fails and
 * returns. Takes 100 ms (it samples the thread's state). 1 when it cut a socket. */
int dial_unstick(pid_t tid, const dial_sockets *b, const char *const *urls, int nurls);
pid_t dial_gettid(void);

/* ---- conn.c ---- */
typedef struct kv_bucket {
    char *name;
    char *stream;           /* "KV_<name>" */
    kvStore *kv;
    int64_t max_value;      /* the stream's MaxMsgSize, -1 for none  } read by the first */
    int64_t dup_window_ns;  /* the stream's duplicate window          } commit: valid once */
    int64_t replicas;       /* the stream's replicas                  } limits_read is set */
    int64_t history;        /* the stream's MaxMsgsPerSubject         }                    */
    int direct;             /* the stream's AllowDirect (ahead.c)     }                    */
    int limits_read;        /* the five above are set (atomic; written under bucket_mu) */
    int64_t purge_refused;  /* tombs.c: CLOCK_MONOTONIC ns of the last purge refusal (atomic) */
    int gone;               /* bucket_gone found its stream deleted (atomic) */
    struct kv_bucket *next;
} kv_bucket;

typedef struct kv_lane kv_lane;

typedef struct kv_conn {
    natsConnection *nc;
    jsCtx *js;
    int64_t max_payload;
    unsigned refs;          /* guarded by conn_mu */
    int detached;           /* no longer current; freed when refs drops to 0 (conn_mu) */
    kv_bucket *buckets;     /* append-only list, guarded by bucket_mu (bucket.c) */
    char inbox[48];         /* the connection's own inbox prefix (random per connection) */
    unsigned long inbox_seq; /* conn_inbox's counter (atomic) */
    pthread_mutex_t lane_mu;
    kv_lane *lanes;         /* the free lanes (lane.c), guarded by lane_mu */
    unsigned lanes_made;    /* guarded by lane_mu */
} kv_conn;


/* The process's connection, connecting first if needed (or again after it was lost: nats.c
 * never reconnects by itself, it closes). Pair with conn_release. -ECONNREFUSED, -EACCES, -EIO, -ETIMEDOUT, logged. */
int conn_acquire(kv_conn **out, const char *key_for_log);
/* The same for an operation on bucket: a connect this call starts binds it too, in the
 * connecting thread (one request: it also starts nats.c's reply thread, as warm_up would). */
int conn_acquire_for(kv_conn **out, const char *key_for_log, const char *bucket);
void conn_release(kv_conn *c);
/* A fresh reply subject below c's own inbox prefix, for a synchronous subscription of ours.
 * Not natsInbox_Create: a forked child inherits nats.c's NUID state, so its inboxes would
 * repeat its parent's, and each would take the other's replies. */
int conn_inbox(kv_conn *c, char *out, size_t outsz);

/* bucket.c: the buckets bound on a connection. */
void bucket_free_all(kv_bucket *list);
void bucket_after_fork_child(void);
/* bucket bound on c (js_KeyValue once per connection). -EIO naming a missing bucket. */
int conn_bucket(kv_conn *c, const char *bucket, const kv_bucket **out);
/* The same without a log line (-EIO for any failure): the connecting thread binds the first
 * caller's bucket (conn_acquire_for), whose own conn_bucket then finds it or says why not. */
int conn_bucket_first(kv_conn *c, const char *bucket);

/* Reads the bucket's stream limits (max value size, duplicate window) once, and warns once
 * per process when the stream is replicated on a server older than 2.11. 0 or -errno. */
int conn_bucket_limits(kv_conn *c, const kv_bucket *b);
/* The bucket's history setting (MaxMsgsPerSubject) as the server has it now: one request,
 * every call (`asya-state bucket edit --history` may have changed it). 0 or -errno. */
int conn_bucket_history(kv_conn *c, const kv_bucket *b, int64_t *history);
/* Whether the bucket's stream has been deleted, asked of the server (one request). Asked
 * after a get that timed out or a commit nobody answered, and before every get and commit
 * while a bucket is known gone: a deleted stream's direct get is not refused, it times out.
 * 1: gone (logged once until it is back), 0: there, -1: cannot tell. */
int bucket_gone(kv_conn *c, const kv_bucket *b);
static inline int bucket_known_gone(const kv_bucket *b)
{
    return __atomic_load_n(&b->gone, __ATOMIC_ACQUIRE);
}
void conn_after_fork_child(void);
/* A fresh message id for a commit ("asya-<random>-<pid>-<n>"), unique across processes. */
/* 1 when the connected server is older than 2.11 (compare-and-set not exact on replicated
 * buckets under contention), 0 when not, -1 when nats.c cannot say. */
int conn_server_older_than_2_11(natsConnection *nc);

/* The bound on every request (NATS_TIMEOUT_MS), in milliseconds. */
int64_t kv_timeout_ms(void);

void conn_msgid(char *out, size_t outsz);

/* The connection generation: bumped on every disconnect, reconnect and new connection.
 * A watcher created under generation g is stale once this differs. Lock-free. */
uint64_t conn_generation(void);
/* The current connection if one is open (refs++, pair with conn_release); never connects.
 * -ENOTCONN when there is none or nats.c closed it for good. */
int conn_current(kv_conn **out);

/* ---- lane.c ---- */
/* One request on a lane (below), from lane_send to lane_wait or lane_drop. */
typedef struct kv_lane_req {
    kv_lane *l;
    char inbox[112];        /* its reply subject */
} kv_lane_req;
/* Publishes an empty request to subj, its reply to a lane taken for it: 0, or -EAGAIN when
 * nothing was sent (no lane could be made: ask the plain way). Pair with lane_wait or
 * lane_drop; call inside a GUARD_REQUEST guard. */
int lane_send(kv_conn *c, const char *subj, kv_lane_req *q);
/* Waits up to NATS_TIMEOUT_MS for q's reply (NATS_OK, *reply to destroy) or nats.c's status
 * (NATS_TIMEOUT, a closed connection...), and gives the lane back. */
natsStatus lane_wait(kv_conn *c, kv_lane_req *q, natsMsg **reply);
/* Gives q's lane back without waiting (its reply, if one comes, is dropped by the next). */
void lane_drop(kv_conn *c, kv_lane_req *q);
/* The value of key, by a direct get whose reply comes straight to this thread (or else by
 * kvStore_Get): 0 (*out set: its owner the natsMsg holding data, or NULL for a copy),
 * -ENOENT (missing, deleted or purged), else -errno, logged. */
int lane_get(kv_conn *c, const kv_bucket *b, const char *key, kv_value *out);
/* Frees what a value holds (its message, or a copy: the read cache's, plain_get's). */
void lane_release(kv_value *v);
/* What a direct get's reply says: 1 a value (with rev not NULL: *rev and *created_ns set),
 * 0 none (404, a delete or purge marker), -EAGAIN nobody answers direct gets (503), -EIO
 * anything else (*why set). */
int lane_direct_reply(natsMsg *msg, uint64_t *rev, int64_t *created_ns, const char **why);
/* Destroys c's lanes (all free: c is being freed). */
void lane_free_all(kv_conn *c);

/* ---- walk.c ---- */
typedef struct kv_walk kv_walk;

/* One entry of a walk: valid until the next walk_next or walk_close. */
typedef struct kv_rec {
    const char *key;        /* the full key (prefix included) */
    int op;                 /* KV_OP_PUT, KV_OP_DEL or KV_OP_PURGE */
    uint64_t rev;
    int64_t time_ns;
    const void *data;       /* the value; NULL when walking headers only */
    size_t len;             /* the value's length, also when walking headers only */
} kv_rec;

/* Starts a walk over every key under prefix (NULL or "": the whole bucket): the last entry
 * of each key (delete and purge markers included), then, for as long as the caller goes on,
 * every change. values 0: headers only (data NULL, len from the server). Sends the
 * subscription and one consumer-info request. -errno, logged. Free with walk_close. */
int walk_open(kv_conn *c, const kv_bucket *b, const char *prefix, int values, kv_walk **out);
/* 0: *rec is the next entry; 1: every initial entry has been delivered (once, in order);
 * -ETIMEDOUT: nothing within timeout_ms (the walk goes on); other -errno: the walk failed.
 * *why (may be NULL) gets a short static description of a failure. Not logged. */
int walk_next(kv_walk *w, int64_t timeout_ms, kv_rec *rec, const char **why);
void walk_close(kv_walk *w);
/* One pass: fn(arg, rec) for the current value of every key under prefix (delete and purge
 * markers skipped, and handed to tombs_see(t) when t is not NULL), each wait bounded by
 * NATS_TIMEOUT_MS, until every key is seen (0) or fn returns non-zero (returned). Errors of
 * the walk as walk_next (walk_open's logged). */
typedef struct tombs tombs;
int walk_once(kv_conn *c, const kv_bucket *b, const char *prefix, int values,
              int (*fn)(void *arg, const kv_rec *rec), void *arg, tombs *t, const char **why);

/* ---- revmem.c ---- */
int revmem_init(int mode); /* KV_REVS_PER_THREAD, _PER_PROCESS or _PER_KEY */
int revmem_recall(const void *mount, const char *key, uint64_t *rev);
void revmem_remember(const void *mount, const char *key, uint64_t rev); /* 0 forgets */
/* A read found rev (or KV_REV_ABSENT); a commit that expected `expected` settled: rev is the
 * new revision, 0 for a conflict (see revmem.c for the two layers). */
void revmem_read(const void *mount, const char *key, uint64_t rev);
/* A value a scan handed out (the sidecar's /query): a read in KV_REVS_PER_KEY mode, where
 * Asya's connectors guard a PUT of a queried document; nothing in the other modes (a query
 * over thousands of documents is not thousands of readers). */
void revmem_listed(const void *mount, const char *key, uint64_t rev);
/* A commit that named its own expectation (If-Match, If-None-Match, O_EXCL) settled: rev is
 * the new revision, 0 for a conflict; unknown: its outcome is not known. In the sidecar (with
 * many clients) it leaves every client's reads alone. */
void revmem_settled_own(const void *mount, const char *key, uint64_t expected, uint64_t rev,
                        int unknown);
/* The key was removed: forgotten, but in the sidecar (many clients) the reads made before the
 * delete stay, so their PUTs conflict. */
void revmem_removed(const void *mount, const char *key);
void revmem_settled(const void *mount, const char *key, uint64_t expected, uint64_t rev);
/* A commit that expected `expected` failed with its outcome unknown (any failure but a
 * conflict): this thread's memory of key is forgotten and its read retired. */
void revmem_unknown(const void *mount, const char *key, uint64_t expected);
/* Each layer keeps at most ASYA_STATE_REVMEM_MAX entries (default below), the least recently
 * used evicted. revmem_recall answers -ESTALE when an entry of key may have been evicted
 * (the commit is then refused as a conflict, never sent blind) and revmem_cleared records
 * that answer, so the next commit without a read is an ordinary blind put. */
#define REVMEM_MAX_DEFAULT 65536
void revmem_cleared(const void *mount, const char *key);
/* Entries held: the calling thread's layer (thread_layer 1) or the process's. */
size_t revmem_count(int thread_layer);

/* ---- mounts (backend.c) ---- */
typedef struct kv_cache kv_cache;
struct kv_mount {
    char *bucket;
    char *prefix;           /* NULL for none */
    unsigned flags;
    kv_cache *cache;        /* KV_MOUNT_WATCH/META: set once by cache_start (atomic) */
};

/* ---- cache.c ---- */
/* Starts m's walk thread once per process (no-op without KV_MOUNT_WATCH/META or when
 * running). Call after an operation has connected; it never connects itself. */
void cache_start(kv_mount *m);
/* Every cache_* below answers only from a fresh mirror (caught up on the current
 * connection generation), never with a request, and returns 1 when it does not answer.
 *
 * key's value: 0 with *out filled (caller frees out->data; read=watch only), -ENOENT when
 * the mirror says missing or deleted, 1 when not served (read=meta: also for a present
 * value). Remembers nothing (the caller does, as for a direct Get). */
int cache_get(kv_mount *m, const char *key, kv_value *out);
/* key's size, revision and time (a key ending in '/' is a directory marker: is_dir), or
 * -ENOENT. */
int cache_stat(const kv_mount *m, const char *key, kv_stat *out);
/* What a listing of the directory whose keys start with base ("<prefix>." for the root,
 * else its marker key) finds: fn(arg, key, kind) for each child, under the mirror's lock
 * (fn may take only leaf locks: no kv/ call, no nats.c): CHILD_SELF (key = base: the
 * directory's own marker exists), CHILD_VALUE (a value), CHILD_MARKER (a child directory's
 * marker, key "<base>name/"), CHILD_BELOW (a child directory without a marker, with keys
 * below: key "<base>name/"). 0, fn's first non-zero result, or 1. */
enum { CHILD_SELF, CHILD_VALUE, CHILD_MARKER, CHILD_BELOW };
int cache_children(const kv_mount *m, const char *base,
                   int (*fn)(void *arg, const char *key, int kind), void *arg);
/* This process wrote key: value (deleted 0) or delete marker (deleted 1) at rev. Keeps a
 * newer revision already mirrored. No-op without a cache. */
void cache_note(const kv_mount *m, const char *key, const void *data, size_t len, uint64_t rev,
                int deleted);
void cache_after_fork_child(void);
/* Calls fn(arg, key, data, len) for every live value of m's mirror (read=watch), under the
 * mirror's lock (fn must not call into kv/ or nats.c): returns 0 or fn's first non-zero
 * result. 1 when not served (no mirror with values, or not caught up): scan the server. */
int cache_each(kv_mount *m,
               int (*fn)(void *arg, const char *key, const void *data, size_t len, uint64_t rev),
               void *arg);

/* ---- mindex.c: a mirror's index (cache.c holds the lock; pure, no nats.c) ---- */
typedef struct mindex mindex;
/* Longest key the index holds: a NATS subject is under nats-server's max_control_line
 * (4 KiB by default). */
#define MINDEX_KEY_MAX 4096
typedef struct {
    int is_dir;             /* a directory marker (key ending in '/') */
    const void *data;       /* a value's bytes under read=watch (valid under the lock), or NULL */
    size_t len;             /* a value's length (0 for a directory) */
    uint64_t rev;
    int64_t time_ns;
} mindex_entry;
/* An empty index of the keys starting with base ("<prefix>." or ""). NULL: no memory. */
mindex *mindex_new(const char *base);
/* Empties it (values freed); mindex_free also frees x (NULL: no-op). */
void mindex_clear(mindex *x);
void mindex_free(mindex *x);
/* key's new state: live (a value of len bytes; *data, malloc'd or NULL, is taken and set to
 * NULL) or deleted; local: by this process (a delete leaves a tombstone). A state older than
 * the key's (rev lower) is ignored, as are keys outside base. 0, -ENOMEM, or -ENAMETOOLONG
 * (over MINDEX_KEY_MAX): the index no longer mirrors the key space. */
int mindex_set(mindex *x, const char *key, void **data, size_t len, uint64_t rev,
               int64_t time_ns, int live, int local);
/* key's live state into *out, or -ENOENT. */
int mindex_get(const mindex *x, const char *key, mindex_entry *out);
/* As cache_children (the children of the directory whose keys start with base): 0 or fn's
 * first non-zero result. */
int mindex_children(const mindex *x, const char *base,
                    int (*fn)(void *arg, const char *key, int kind), void *arg);
/* fn(arg, key, data, len, rev) for every live value: 0 or fn's first non-zero result. */
int mindex_each(const mindex *x,
                int (*fn)(void *arg, const char *key, const void *data, size_t len,
                          uint64_t rev),
                void *arg);
/* Bytes the index holds (its blocks, table and header; not the values), and its nodes (one
 * per directory and per value, the root not counted). */
size_t mindex_bytes(const mindex *x);
size_t mindex_count(const mindex *x);

/* ---- scan.c ---- */
int scan_values(kv_mount *m, const char *rel_prefix,
                int (*fn)(void *arg, const char *rel, const void *data, size_t len), void *arg);

/* ---- ops.c ---- */
/* key for rel (marker: with a trailing '/'); -ENAMETOOLONG when over KV_KEY_MAX, logged. */
int ops_key(const kv_mount *m, const char *rel, int marker, char *out, size_t outsz);
/* Publishes data at key: expect = 0 put, KV_REV_ABSENT create-only (over a tombstone too),
 * r update expecting r. del: a KV delete marker instead of a value. Resolves unknown
 * outcomes (see ops.c). *rev gets the new revision. */
int ops_publish(kv_conn *c, const kv_bucket *b, const char *key, const void *data,
                size_t len, uint64_t expect, int del, uint64_t *rev);
/* conn_acquire + conn_bucket for m. */
int ops_open(const kv_mount *m, const char *key, kv_conn **c, const kv_bucket **b);
/* ops_key (the marker key when marker) into key, then ops_open. */
int ops_key_open(kv_mount *m, const char *rel, int marker, char *key, size_t keysz,
                 kv_conn **c, const kv_bucket **b);

/* key's stat (a value; a directory marker when is_dir): from the read cache's mirror when
 * fresh, else one Get. -ENOENT when missing (not logged). */
int ops_entry_stat(kv_conn *c, const kv_mount *m, const kv_bucket *b, const char *key,
                   int is_dir, kv_stat *out);
/* stat on an acquired connection (dirs.c uses it too). */
int ops_stat_on(kv_conn *c, const kv_bucket *b, const kv_mount *m, const char *rel,
                kv_stat *out);
/* ops_key_open and release: the key is valid, the connection up, the bucket bound. */
int ops_bind(kv_mount *m, const char *rel);
int ops_limit(kv_mount *m, const char *rel, uint64_t *max);
int ops_get(kv_mount *m, const char *rel, kv_value *out);
int ops_stat(kv_mount *m, const char *rel, kv_stat *out);
int ops_isdir(kv_mount *m, const char *rel);

/* ahead.c: a Get of key sent before another request on c and read after it (one round trip
 * for both). ahead_send always succeeds (when it cannot send, ahead_wait makes the plain
 * Get); pair every ahead_send with one ahead_wait (1 when key has a value, 0 when not, or a
 * negative errno) or ahead_drop. key must stay valid until then. */
typedef struct kv_ahead {
    kv_conn *c;
    const kv_bucket *b;
    const char *key;
    int sent;               /* 0: nothing sent ahead (ahead_wait asks the plain way) */
    kv_lane_req q;
} kv_ahead;
int ahead_send(kv_conn *c, const kv_bucket *b, const char *key, kv_ahead *a);
int ahead_wait(kv_ahead *a);
/* ahead_wait's answer no longer needed (the other request failed): nothing waited for. */
void ahead_drop(kv_ahead *a);
int ops_commit(kv_mount *m, const char *rel, const void *data, size_t len, unsigned flags,
               uint64_t *rev_out);
int ops_remove(kv_mount *m, const char *rel);
int ops_version(kv_mount *m, const char *rel, uint64_t *rev);

/* ---- watch.c ---- */
int watch_key(kv_mount *m, const char *rel, int marker, char *out, size_t outsz);
int watch_history(kv_mount *m, const char *rel, int (*fn)(void *arg, const kv_event *ev),
                  void *arg);
int watch_run(kv_mount *m, const char *rel, unsigned flags,
              int (*fn)(void *arg, const kv_event *ev), void *arg);

/* ---- dirs.c ---- */
/* Calls fn for every live key under prefix (NULL: the whole bucket) starting with base,
 * until fn returns non-zero (then that value is returned). Errors logged. */
int dirs_scan(kv_conn *c, const kv_bucket *b, const char *prefix, const char *base,
              int (*fn)(const char *key, void *arg), void *arg);
/* 1 when some live key of m starts with dirbase ("key(rel)/") other than skip (may be
 * NULL), 0 when none, or a negative errno. */
int dirs_has_below(kv_conn *c, const kv_bucket *b, const kv_mount *m, const char *dirbase,
                   const char *skip);
int dirs_list(kv_mount *m, const char *rel, kv_list *out);
int dirs_mkdir(kv_mount *m, const char *rel);
int dirs_rmdir(kv_mount *m, const char *rel);
int dirs_parent(kv_mount *m, const char *rel);
int dirs_mkparents(kv_mount *m, const char *rel);
/* Directory markers this process has seen or written (a set per process, by mount and
 * marker key): noted by stat, mkdir and listings, forgotten by rmdir. */
int dirs_known(const kv_mount *m, const char *marker);
void dirs_note(const kv_mount *m, const char *marker, int known);
void dirs_after_fork_child(void);
void dirs_release_list(kv_list *l);

/* ---- tombs.c ---- */
#define TOMBS_GRACE_S 5      /* a delete marker younger than this is never removed */
#define TOMBS_AUTO_MIN 256   /* TOMBS_AUTO: a scan that skipped fewer removes none */
#define TOMBS_AUTO_MAX 1000  /* TOMBS_AUTO: at most this many removed per scan */
enum { TOMBS_AUTO = 0, TOMBS_ALL = 1, TOMBS_OFF = 2 };
typedef struct tomb {
    char *key;
    uint64_t seq;
} tomb;
/* The delete markers one scan skipped: seen counts all, v holds those it may remove. */
struct tombs {
    size_t seen, n, cap;
    tomb *v;
    int64_t now_ns;         /* the server's time at the scan's start (walk_once; the client's
                             * clock at the first marker when the server gave none) */
};
typedef struct tombs_stats {
    size_t seen, removable, removed;
    const char *why;        /* why removable - removed stayed (a static string), or NULL */
} tombs_stats;
/* The process's policy (TOMBS_AUTO unless the CLI sets another; see tombs.c). */
void tombs_policy(int policy);
/* A delete or purge entry a scan skipped. Cannot fail (out of memory: not removable). */
void tombs_see(tombs *t, const kv_rec *e);
/* After a scan: removes what the policy allows of t (one request each; TOMBS_AUTO reads
 * the history setting first, and skips a bucket whose purges were refused less than 5 min
 * ago). 0 or the first failure (logged; the rest stay). The figures and the reason go to
 * the thread's tombs_last. */
int tombs_sweep(kv_conn *c, const kv_bucket *b, tombs *t);
void tombs_free(tombs *t);
/* The calling thread's last tombs_sweep: markers seen, old enough to remove, removed, why
 * not all (valid until the thread's next sweep). */
void tombs_last(tombs_stats *out);

#endif
