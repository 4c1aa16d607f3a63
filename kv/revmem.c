/* revmem.c: the revision memory of the compare-and-set rules (SPEC "Compare-and-set"),
 * a uthash table keyed by (mount handle, key).
 *
 * Scope chosen once by revmem_init: per thread (the shim: a __thread table, freed by a
 * pthread key destructor when the thread exits) or per process (the sidecar: one table
 * guarded by proc_mu, a leaf lock). Values: a revision, or KV_REV_ABSENT for "read and
 * found absent". A forked child keeps its copy of the forking thread's table.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* uthash must never exit() the host program: on allocation failure the add is dropped
 * (the memory then simply does not remember; the next commit is an unconditional put). */
#define HASH_NONFATAL_OOM 1
static __thread int add_failed;
#define uthash_nonfatal_oom(obj) (add_failed = 1)
#include <uthash.h>

#include "kv/internal.h"

typedef struct rev_entry {
    UT_hash_handle hh;
    uint64_t rev;
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

/* The table to use, locked when per process (unlock with table_done). */
static rev_entry **table_begin(void)
{
    if (per_process == 1) {
        pthread_mutex_lock(&proc_mu);
        return &proc_table;
    }
    pthread_once(&key_once, make_key);
    return &thread_table;
}

static void table_done(rev_entry **t)
{
    if (per_process == 1)
        pthread_mutex_unlock(&proc_mu);
    else if (t == &thread_table)
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

int revmem_recall(const void *mount, const char *key, uint64_t *rev)
{
    char k[sizeof(void *) + KV_KEY_MAX + 2];
    size_t kl = build(k, sizeof k, mount, key);
    if (kl == 0)
        return -ENAMETOOLONG;
    rev_entry **t = table_begin();
    rev_entry *e = NULL;
    HASH_FIND(hh, *t, k, kl, e);
    int r = e ? 0 : -ENOENT;
    if (e)
        *rev = e->rev;
    table_done(t);
    return r;
}

void revmem_remember(const void *mount, const char *key, uint64_t rev)
{
    char k[sizeof(void *) + KV_KEY_MAX + 2];
    size_t kl = build(k, sizeof k, mount, key);
    if (kl == 0)
        return;
    rev_entry **t = table_begin();
    rev_entry *e = NULL;
    HASH_FIND(hh, *t, k, kl, e);
    if (rev == 0) {
        if (e) {
            HASH_DEL(*t, e);
            free(e);
        }
    } else if (e) {
        e->rev = rev;
    } else if ((e = malloc(sizeof *e + kl)) != NULL) {
        e->rev = rev;
        e->klen = kl;
        memcpy(e->k, k, kl);
        add_failed = 0;
        HASH_ADD_KEYPTR(hh, *t, e->k, kl, e);
        if (add_failed)
            free(e);
    }
    table_done(t);
}
