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
    uint64_t rev;               /* the last revision read or committed */
    rev_reads reads[READS_MAX]; /* the process layer: outstanding reads, by revision */
    int nreads;
    int pinned;                 /* the thread layer: set by remember (an open file's own
                                   revision), which outweighs the process layer's readers */
    int from_read;              /* the thread layer: set by this thread's own read */
    size_t klen;
    char k[];                   /* mount pointer bytes, then the key */
} rev_entry;

static int per_process = -1;    /* set once by revmem_init */
static pthread_mutex_t proc_mu = PTHREAD_MUTEX_INITIALIZER;
static rev_entry *proc_table;   /* guarded by proc_mu */
static __thread rev_entry *thread_table;
static pthread_key_t thread_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void free_table(void *p)
{
    rev_entry *t = p, *e, *tmp;
    HASH_ITER(hh, t, e, tmp) {
        /* HASH_DEL then free of the iterated entry is uthash's idiom (the analyzer loses
         * track of tmp): NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
        HASH_DEL(t, e);
        free(e);
    }
    thread_table = NULL; /* the key's destructor runs on the exiting thread: a later
                            destructor that reaches kv/ starts a fresh table */
}

static void make_key(void)
{
    pthread_key_create(&thread_key, free_table);
}

int revmem_init(int proc)
{
    if (per_process < 0)
        per_process = proc ? 1 : 0;
    pthread_once(&key_once, make_key);
    return 0;
}

static void thread_done(void)
{
    pthread_setspecific(thread_key, thread_table);
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

static rev_entry *find(rev_entry *t, const char *k, size_t kl)
{
    rev_entry *e = NULL;
    HASH_FIND(hh, t, k, kl, e);
    return e;
}

/* The entry of k in *t, made (rev 0) when missing; NULL when out of memory. */
static rev_entry *get_or_add(rev_entry **t, const char *k, size_t kl)
{
    rev_entry *e = find(*t, k, kl);
    if (e || !(e = calloc(1, sizeof *e + kl)))
        return e;
    e->klen = kl;
    memcpy(e->k, k, kl);
    add_failed = 0;
    HASH_ADD_KEYPTR(hh, *t, e->k, kl, e);
    if (add_failed) {
        free(e);
        return NULL;
    }
    return e;
}

static void drop(rev_entry **t, const char *k, size_t kl)
{
    rev_entry *e = find(*t, k, kl);
    if (e) {
        HASH_DEL(*t, e);
        free(e);
    }
}

/* Sets the thread layer's entry (0 forgets). Shim mode only. */
static void thread_set(const char *k, size_t kl, uint64_t rev, int pinned, int from_read)
{
    pthread_once(&key_once, make_key);
    if (rev == 0) {
        drop(&thread_table, k, kl);
    } else {
        rev_entry *e = get_or_add(&thread_table, k, kl);
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

void revmem_read(const void *mount, const char *key, uint64_t rev)
{
    char k[KBUF];
    size_t kl = build(k, sizeof k, mount, key);
    if (kl == 0)
        return;
    if (!per_process)
        thread_set(k, kl, rev, 0, 1);
    pthread_mutex_lock(&proc_mu);
    rev_entry *e = get_or_add(&proc_table, k, kl);
    if (e) {
        e->rev = rev;
        expire(e);
        rev_reads *r = NULL;
        uintptr_t me = self();
        for (int i = 0; i < e->nreads && !r; i++)
            if (e->reads[i].rev == rev && e->reads[i].reader == me)
                r = &e->reads[i];
        if (!r && e->nreads < READS_MAX)
            *(r = &e->reads[e->nreads++]) = (rev_reads){ .rev = rev, .reader = me };
        if (!r)
            r = oldest(e, 0); /* full: counted with the oldest, which only adds conflicts */
        r->n++;
        r->at = now_ns();
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
    if (!per_process) {
        pthread_once(&key_once, make_key);
        t = find(thread_table, k, kl);
        if (t && (t->pinned || t->from_read)) { /* what this thread's bytes are based on */
            *rev = t->rev;
            return 0;
        }
    }
    /* Without a read of its own, reads not yet followed by a commit outweigh this thread's
     * last commit: the commit may be one of those readers' (read in another thread), and
     * its own revision may be newer than what that reader saw. The oldest such read is
     * expected: of two readers of r, only the first to commit succeeds. */
    pthread_mutex_lock(&proc_mu);
    rev_entry *e = find(proc_table, k, kl);
    rev_reads *o = e ? oldest(e, self()) : NULL;
    int r = 0;
    if (o)
        *rev = o->rev;
    else if (t)
        *rev = t->rev;
    else if (e)
        *rev = e->rev;
    else
        r = -ENOENT;
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
    rev_entry *e = find(proc_table, k, kl);
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
        HASH_DEL(proc_table, e); /* a conflict, nobody else reading: start clean */
        free(e);
    } else if (rev && (e || (e = get_or_add(&proc_table, k, kl)))) {
        e->rev = rev;
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
        drop(&proc_table, k, kl);
    } else {
        rev_entry *e = get_or_add(&proc_table, k, kl);
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
    rev_entry *e = find(proc_table, k, kl);
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
        HASH_DEL(proc_table, e); /* nobody else reading: the next read starts clean */
        free(e);
    }
    pthread_mutex_unlock(&proc_mu);
}
