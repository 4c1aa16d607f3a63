/* revmem.c: the revision memory of the compare-and-set rules (SPEC "Compare-and-set"),
 * uthash tables keyed by (mount handle, key).
 *
 * Two layers. The process layer (always) keeps, per key, the revision last read and how many
 * reads of it have not been followed by a commit or a conflict yet ("readers"); the thread
 * layer (the shim only: a __thread table, freed by a pthread key destructor when the thread
 * exits) keeps each thread's own last read or commit, as before.
 *
 * A commit expects the revision of the thread's own last read when there is one (or an open
 * file's pinned revision), else the oldest outstanding read of another thread, else the
 * thread's last commit, else the process layer's last revision. A thread's own outstanding
 * reads never outweigh its own later commit (it knows it moved on: a loop of reads then
 * writes in one thread never conflicts with itself). Why the process layer: a read in one thread and the write in another (an
 * asyncio task whose write runs in an executor thread), or two clients of one sidecar, must
 * not turn into a blind put. Why "readers": when two readers of revision r commit, the first
 * succeeds and the layer keeps expecting r while readers of it remain, so the second gets
 * EEXIST and re-reads (a lost update otherwise). While reads are outstanding, a commit
 * without a revision of its own thread expects the oldest one; a commit or a conflict
 * consumes one reader of the revision it expected. A read that no commit follows within
 * READ_TTL_NS is forgotten, so read-only readers cause false conflicts for at most that
 * long. An open file's own revision (remember: pinned) outweighs all of this.
 *
 * A commit whose outcome is unknown (ETIMEDOUT, a connection lost while committing, any
 * failure but a conflict) forgets as a conflict does (revmem_unknown): the thread's own entry
 * (an open file's pinned revision among them) goes, so its next commit is based on its next
 * read, never on a revision the failed write may have moved past (a false EEXIST).
 *
 * Bounded: each layer (the process's, and each thread's) holds at most ASYA_STATE_REVMEM_MAX
 * entries (65,536), the least recently used evicted first. Forgetting must never turn a
 * guarded commit into a blind put, so each layer marks what it evicted in a bit map by hash
 * of the key (8 bits per entry allowed, made at the first eviction): a commit that finds no
 * entry in a layer whose map has the key's bit set gets -ESTALE from revmem_recall, and
 * ops.c answers it as a conflict (EEXIST) without sending anything. revmem_cleared then
 * leaves a "cleared" entry (rev 0), so the caller's retry is guarded by its new read, or is
 * a blind put if it reads nothing: at most one false conflict per key per eviction that
 * marked its bit (a colliding key's included). Deliberate forgetting (a conflict, an
 * unknown outcome, a remove) marks nothing: the next commit knows what happened.
 *
 * KV_REVS_PER_KEY (the sidecar with STATE_SIDECAR_CLIENTS=one) keeps no reads: the process
 * layer holds each key's last revision read or committed, and a commit expects it (SPEC's
 * rule with one client; two clients that read one revision both succeed).
 *
 * proc_mu guards the process layer (a leaf lock). Values: a revision, or KV_REV_ABSENT for
 * "read and found absent". A forked child keeps its copy of both.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* uthash must never exit() the host program: on allocation failure the add is dropped
 * (the memory then simply does not remember; the next commit is an unconditional put). */
#define HASH_NONFATAL_OOM 1
static __thread int add_failed;
#define uthash_nonfatal_oom(obj) (add_failed = 1)
#include <uthash.h>

#include "kv/internal.h"

/* Reads of one revision not yet followed by a commit or conflict (the process layer). */
#define READS_MAX 16
#define READ_TTL_NS (10 * 1000000000LL)
typedef struct rev_reads {
    uint64_t rev;
    uintptr_t reader;           /* the reading thread (0 in the sidecar: any client) */
    uint32_t n;
    int64_t at;                 /* the last read's time (CLOCK_MONOTONIC, ns) */
} rev_reads;

typedef struct rev_entry {
    UT_hash_handle hh;
    struct rev_entry *older, *newer; /* the layer's use order (least recently used first) */
    uint64_t rev;               /* the last revision read or committed; 0: "cleared" (a
                                   conflict for lost memory was answered: blind from now) */
    rev_reads *reads;           /* the process layer: outstanding reads, by revision */
    int nreads, cap;            /* (grown 1, 4, 16: most keys have one reader) */
    int pinned;                 /* the thread layer: set by remember (an open file's own
                                   revision), which outweighs the process layer's readers */
    int from_read;              /* the thread layer: set by this thread's own read */
    size_t klen;
    char k[];                   /* mount pointer bytes, then the key */
} rev_entry;

/* One layer: its table, its use order, and the evictions it made (a bit per hash slot). */
typedef struct rev_layer {
    rev_entry *table;
    rev_entry *oldest, *newest;
    uint8_t *evicted;           /* NULL until the first eviction */
} rev_layer;

static int per_process = -1;    /* set once by revmem_init */
static int per_key;             /* KV_REVS_PER_KEY: the process layer keeps no reads */
static size_t entries_max = REVMEM_MAX_DEFAULT; /* per layer; set once by revmem_init */
static size_t slots = 8 * REVMEM_MAX_DEFAULT; /* bits in a layer's evicted map (a power of
                                                  two); set once by revmem_init */
static pthread_mutex_t proc_mu = PTHREAD_MUTEX_INITIALIZER;
static rev_layer proc;          /* guarded by proc_mu */
static __thread rev_layer thr;
static pthread_key_t thread_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void entry_free(rev_entry *e)
{
    free(e->reads);
    free(e);
}

static void free_table(void *p)
{
    rev_layer *l = p;
    rev_entry *e, *tmp;
    HASH_ITER(hh, l->table, e, tmp) {
        /* HASH_DEL then free of the iterated entry is uthash's idiom (the analyzer loses
         * track of tmp): NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
        HASH_DEL(l->table, e);
        entry_free(e);
    }
    free(l->evicted);
    /* the key's destructor runs on the exiting thread: a later destructor that reaches kv/
     * starts a fresh table */
    memset(l, 0, sizeof *l);
}

static void make_key(void)
{
    pthread_key_create(&thread_key, free_table);
}

int revmem_init(int mode)
{
    if (per_process < 0) {
        per_process = mode ? 1 : 0;
        per_key = mode == KV_REVS_PER_KEY;
        const char *v = getenv("ASYA_STATE_REVMEM_MAX");
        char *end = NULL;
        unsigned long long n = v && *v ? strtoull(v, &end, 10) : 0;
        if (end && !*end && n >= 1 && n <= (1ull << 30))
            entries_max = (size_t)n;
        for (slots = 1024; slots < 8 * entries_max && slots < (1u << 27); slots <<= 1)
            ;
    }
    pthread_once(&key_once, make_key);
    return 0;
}

static void thread_done(void)
{
    pthread_setspecific(thread_key, &thr);
}

static size_t build(char *buf, size_t bufsz, const void *mount, const char *key)
{
    size_t kl = strlen(key);
    if (sizeof mount + kl > bufsz)
        return 0;
    memcpy(buf, &mount, sizeof mount);
    memcpy(buf + sizeof mount, key, kl);
    return sizeof mount + kl;
}

/* The evicted map's slot of a table key (FNV-1a). */
static size_t slot_of(const char *k, size_t kl)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < kl; i++)
        h = (h ^ (uint8_t)k[i]) * 1099511628211ull;
    return (size_t)(h ^ (h >> 32)) & (slots - 1);
}

/* 1 when l may have evicted an entry of k: a commit must not take "nothing remembered" for
 * a blind put then. Colliding keys share a slot (a false conflict, never a missed one). */
static int maybe_evicted(const rev_layer *l, const char *k, size_t kl)
{
    size_t s = slot_of(k, kl);
    return l->evicted && (l->evicted[s / 8] >> (s % 8) & 1);
}

static void order_unlink(rev_layer *l, rev_entry *e)
{
    if (e->older)
        e->older->newer = e->newer;
    else
        l->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        l->newest = e->older;
    e->older = e->newer = NULL;
}

static void order_push(rev_layer *l, rev_entry *e)
{
    e->older = l->newest;
    e->newer = NULL;
    if (l->newest)
        l->newest->newer = e;
    else
        l->oldest = e;
    l->newest = e;
}

/* Takes e out of l and frees it. evicted: forgotten for room, not because it was done
 * with; its slot is marked first (0), or -ENOMEM when the map cannot be made (then e
 * stays: growing is better than forgetting unmarked). */
static int remove_entry(rev_layer *l, rev_entry *e, int evicted)
{
    if (evicted) {
        if (!l->evicted && !(l->evicted = calloc(slots / 8, 1)))
            return -ENOMEM;
        size_t s = slot_of(e->k, e->klen);
        l->evicted[s / 8] |= (uint8_t)(1u << (s % 8));
    }
    HASH_DEL(l->table, e);
    order_unlink(l, e);
    entry_free(e);
    return 0;
}

static rev_entry *find(const rev_layer *l, const char *k, size_t kl)
{
    rev_entry *e = NULL;
    HASH_FIND(hh, l->table, k, kl, e);
    return e;
}

/* The entry of k in l, made (rev 0) when missing, evicting the least recently used when l
 * holds entries_max; NULL when out of memory. Either way it becomes the most recent. */
static rev_entry *get_or_add(rev_layer *l, const char *k, size_t kl)
{
    rev_entry *e = find(l, k, kl);
    if (e) {
        order_unlink(l, e);
        order_push(l, e);
        return e;
    }
    while (l->oldest && HASH_COUNT(l->table) >= entries_max)
        if (remove_entry(l, l->oldest, 1) < 0)
            break;
    if (!(e = calloc(1, sizeof *e + kl)))
        return NULL;
    e->klen = kl;
    memcpy(e->k, k, kl);
    add_failed = 0;
    HASH_ADD_KEYPTR(hh, l->table, e->k, kl, e);
    if (add_failed) {
        free(e);
        return NULL;
    }
    order_push(l, e);
    return e;
}

static void drop(rev_layer *l, const char *k, size_t kl)
{
    rev_entry *e = find(l, k, kl);
    if (e)
        remove_entry(l, e, 0);
}

/* Sets the thread layer's entry (0 forgets). Shim mode only. */
static void thread_set(const char *k, size_t kl, uint64_t rev, int pinned, int from_read)
{
    pthread_once(&key_once, make_key);
    if (rev == 0) {
        drop(&thr, k, kl);
    } else {
        rev_entry *e = get_or_add(&thr, k, kl);
        if (e) {
            e->rev = rev;
            e->pinned = pinned;
            e->from_read = from_read;
        }
    }
    thread_done();
}

/* Each entry point below builds its table key first: (mount, key) into k. */
#define KBUF (sizeof(void *) + KV_KEY_MAX + 2)

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* "Read and found absent" is older than any revision. */
static int older(uint64_t a, uint64_t b)
{
    return a == KV_REV_ABSENT ? b != KV_REV_ABSENT : b != KV_REV_ABSENT && a < b;
}

/* Forgets reads older than READ_TTL_NS: a read no commit followed for that long was a read
 * only, and must not keep other writers conflicting. */
static void expire(rev_entry *e)
{
    int64_t limit = now_ns() - READ_TTL_NS;
    for (int i = 0; i < e->nreads;)
        if (e->reads[i].at < limit)
            e->reads[i] = e->reads[--e->nreads];
        else
            i++;
}

/* This thread, as outstanding reads record it (0 in the sidecar, whose clients share it). */
static uintptr_t self(void)
{
    return per_process ? 0 : (uintptr_t)pthread_self();
}

/* The oldest revision with outstanding reads, leaving out (except is not 0) the reads of
 * thread except: a thread that committed after its own reads knows they are superseded. */
static rev_reads *oldest(rev_entry *e, uintptr_t except)
{
    expire(e);
    rev_reads *o = NULL;
    for (int i = 0; i < e->nreads; i++)
        if ((!except || e->reads[i].reader != except) && (!o || older(e->reads[i].rev, o->rev)))
            o = &e->reads[i];
    return o;
}

void revmem_listed(const void *mount, const char *key, uint64_t rev)
{
    if (per_key && rev)
        revmem_read(mount, key, rev);
}

void revmem_read(const void *mount, const char *key, uint64_t rev)
{
    char k[KBUF];
    size_t kl = build(k, sizeof k, mount, key);
    if (kl == 0)
        return;
    if (!per_process)
        thread_set(k, kl, rev, 0, 1);
    pthread_mutex_lock(&proc_mu);
    rev_entry *e = get_or_add(&proc, k, kl);
    if (e && per_key) {
        e->rev = rev; /* the last revision read or committed, nothing else */
    } else if (e) {
        e->rev = rev;
        expire(e);
        rev_reads *r = NULL;
        uintptr_t me = self();
        for (int i = 0; i < e->nreads && !r; i++)
            if (e->reads[i].rev == rev && e->reads[i].reader == me)
                r = &e->reads[i];
        if (!r && e->nreads == e->cap && e->cap < READS_MAX) {
            int cap = e->cap ? e->cap * 4 : 1;
            rev_reads *v = realloc(e->reads, (size_t)cap * sizeof *v);
            if (v) {
                e->reads = v;
                e->cap = cap;
            }
        }
        if (!r && e->nreads < e->cap)
            *(r = &e->reads[e->nreads++]) = (rev_reads){ .rev = rev, .reader = me };
        if (r) {
            r->n++;
            r->at = now_ns();
        } else if ((r = oldest(e, 0))) {
            /* full: counted with the oldest, which only adds conflicts; its time is left as
             * it is, so it still expires READ_TTL_NS after its own last read (reads of other
             * revisions must not keep it alive) */
            r->n++;
        } /* (none: out of memory before any read; e->rev still guards) */
    }
    pthread_mutex_unlock(&proc_mu);
}

int revmem_recall(const void *mount, const char *key, uint64_t *rev)
{
    char k[KBUF];
    size_t kl = build(k, sizeof k, mount, key);
    if (kl == 0)
        return -ENAMETOOLONG;
    rev_entry *t = NULL;
    int lost = 0;
    if (!per_process) {
        pthread_once(&key_once, make_key);
        t = find(&thr, k, kl);
        if (t && (t->pinned || t->from_read)) { /* what this thread's bytes are based on */
            *rev = t->rev;
            return 0;
        }
        lost = !t && maybe_evicted(&thr, k, kl); /* its own read may have been */
    }
    /* Without a read of its own, reads not yet followed by a commit outweigh this thread's
     * last commit: the commit may be one of those readers' (read in another thread), and
     * its own revision may be newer than what that reader saw. The oldest such read is
     * expected: of two readers of r, only the first to commit succeeds. */
    pthread_mutex_lock(&proc_mu);
    rev_entry *e = find(&proc, k, kl);
    lost = lost || (!e && maybe_evicted(&proc, k, kl)); /* another's read may have been */
    rev_reads *o = e ? oldest(e, self()) : NULL;
    int r = 0;
    if (lost)
        r = -ESTALE;
    else if (o)
        *rev = o->rev;
    else if (t && t->rev)
        *rev = t->rev;
    else if (e && e->rev)
        *rev = e->rev;
    else
        r = -ENOENT; /* nothing, or "cleared" (rev 0) */
    pthread_mutex_unlock(&proc_mu);
    return r;
}

void revmem_settled(const void *mount, const char *key, uint64_t expected, uint64_t rev)
{
    char k[KBUF];
    size_t kl = build(k, sizeof k, mount, key);
    if (kl == 0)
        return;
    if (!per_process)
        thread_set(k, kl, rev, 0, 0);
    pthread_mutex_lock(&proc_mu);
    rev_entry *e = find(&proc, k, kl);
    if (e) { /* the most recently used */
        order_unlink(&proc, e);
        order_push(&proc, e);
    }
    /* One reader is done: after a success, a reader of the expected revision (this
     * thread's, else another's); after a conflict, this thread's reader of that revision,
     * else the newest reader: the committer's read, when it is not known, was newer than
     * what it was told to expect (else it would not have conflicted, but for a writer that
     * got there first), and an older reader left in place keeps its own commit guarded. */
    int hit = -1;
    for (int i = 0; e && expected && i < e->nreads; i++) {
        const rev_reads *x = &e->reads[i];
        int mine = x->reader && x->reader == self();
        if (x->rev == expected && (hit < 0 || mine))
            hit = i;
    }
    if (rev == 0 && e && (hit < 0 || !e->reads[hit].reader || e->reads[hit].reader != self())) {
        for (int i = 0; i < e->nreads; i++) /* a conflict with no read of its own: newest */
            if (hit < 0 || older(e->reads[hit].rev, e->reads[i].rev))
                hit = i;
    }
    if (hit >= 0 && --e->reads[hit].n == 0)
        e->reads[hit] = e->reads[--e->nreads];
    if (rev == 0 && e && !e->nreads) {
        /* a conflict, nobody else reading: start clean; but for the sidecar's one client,
         * as Asya's connectors keep a refused ETag, the revision stays and refuses every
         * PUT until a read (a retry without one would overwrite the other writer) */
        if (!per_key)
            remove_entry(&proc, e, 0);
    } else if (rev && (e || (e = get_or_add(&proc, k, kl)))) {
        e->rev = rev;
    }
    pthread_mutex_unlock(&proc_mu);
}

void revmem_settled_own(const void *mount, const char *key, uint64_t expected, uint64_t rev,
                        int unknown)
{
    if (!per_process || per_key) { /* the shim's threads, or one client: as any commit */
        if (unknown)
            revmem_unknown(mount, key, expected);
        else
            revmem_settled(mount, key, expected, rev);
        return;
    }
    /* The sidecar's anonymous clients: the reads belong to clients that did not name their
     * revision; whatever this commit's fate, none of them is done. */
    char k[KBUF];
    size_t kl = build(k, sizeof k, mount, key);
    if (kl == 0 || unknown || rev == 0)
        return;
    pthread_mutex_lock(&proc_mu);
    rev_entry *e = get_or_add(&proc, k, kl);
    if (e)
        e->rev = rev;
    pthread_mutex_unlock(&proc_mu);
}

void revmem_removed(const void *mount, const char *key)
{
    if (!per_process || per_key) {
        revmem_remember(mount, key, 0); /* forgotten (SPEC "Operations": unlink, remove) */
        return;
    }
    /* The sidecar's anonymous clients: those that read before the delete still PUT from
     * what they read, and must meet the delete (a conflict), never a blind put. */
    char k[KBUF];
    size_t kl = build(k, sizeof k, mount, key);
    if (kl == 0)
        return;
    pthread_mutex_lock(&proc_mu);
    rev_entry *e = find(&proc, k, kl);
    if (e) {
        expire(e);
        if (e->nreads)
            e->rev = 0; /* no revision of its own: a PUT without a read is a put */
        else
            remove_entry(&proc, e, 0);
    }
    pthread_mutex_unlock(&proc_mu);
}

void revmem_remember(const void *mount, const char *key, uint64_t rev)
{
    char k[KBUF];
    size_t kl = build(k, sizeof k, mount, key);
    if (kl == 0)
        return;
    if (!per_process) {
        thread_set(k, kl, rev, 1, 0);
        if (rev)
            return; /* the thread's own expectation (exec, an open file's revision) */
    }
    pthread_mutex_lock(&proc_mu);
    if (rev == 0) {
        drop(&proc, k, kl);
    } else {
        rev_entry *e = get_or_add(&proc, k, kl);
        if (e) {
            e->rev = rev;
            e->nreads = 0;
        }
    }
    pthread_mutex_unlock(&proc_mu);
}

void revmem_unknown(const void *mount, const char *key, uint64_t expected)
{
    char k[KBUF];
    size_t kl = build(k, sizeof k, mount, key);
    if (kl == 0)
        return;
    if (!per_process)
        thread_set(k, kl, 0, 0, 0);
    pthread_mutex_lock(&proc_mu);
    rev_entry *e = find(&proc, k, kl);
    /* This thread's reads are done (its commit came after them, landed or not), as after a
     * success; another thread's outstanding read keeps guarding that thread's commit. In the
     * sidecar, whose reads are nobody's, one reader of the expected revision is done. */
    for (int i = 0; e && i < e->nreads;) {
        rev_reads *x = &e->reads[i];
        if (per_process && expected && x->rev == expected) {
            if (--x->n == 0)
                *x = e->reads[--e->nreads];
            break;
        }
        if (!per_process && x->reader == self())
            *x = e->reads[--e->nreads];
        else
            i++;
    }
    if (e && !e->nreads) {
        remove_entry(&proc, e, 0); /* nobody else reading: the next read starts clean */
    }
    pthread_mutex_unlock(&proc_mu);
}

void revmem_cleared(const void *mount, const char *key)
{
    char k[KBUF];
    size_t kl = build(k, sizeof k, mount, key);
    if (kl == 0)
        return;
    if (!per_process) {
        pthread_once(&key_once, make_key);
        get_or_add(&thr, k, kl); /* a new entry is "cleared"; an existing one stays */
        thread_done();
    }
    pthread_mutex_lock(&proc_mu);
    get_or_add(&proc, k, kl);
    pthread_mutex_unlock(&proc_mu);
}

size_t revmem_count(int thread_layer)
{
    if (thread_layer)
        return HASH_COUNT(thr.table);
    pthread_mutex_lock(&proc_mu);
    size_t n = HASH_COUNT(proc.table);
    pthread_mutex_unlock(&proc_mu);
    return n;
}
