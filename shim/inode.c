/* inode.c: the open files of this process, one per key (see inode.h): the table that finds
 * them by name, the master memfd that shares one key's bytes between descriptors and
 * mappings, and the commit, by the contract's rules, of an inode's bytes.
 *
 * The table is a uthash keyed "idx/rel" under table_lock. Nothing here holds table_lock
 * while calling out of this file, except the callbacks of shim_inode_each_created. */
#include "shim/inode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "shim/mem.h"
#include "shim/shim.h"

static int add_failed;
#undef uthash_nonfatal_oom
#define uthash_nonfatal_oom(obj) (add_failed = 1)
#include <uthash.h>

/* One entry per name, holding the open file of each thread that has the name open. */
struct entry {
    UT_hash_handle hh;
    struct shim_inode **v;
    int n;
    char key[]; /* "idx/rel" */
};

static struct entry *table;
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;

static struct entry *find_locked(int idx, const char *rel)
{
    char key[PATH_MAX + 16];
    if (!table || (size_t)snprintf(key, sizeof key, "%d/%s", idx, rel) >= sizeof key)
        return NULL;
    struct entry *e = NULL;
    HASH_FIND_STR(table, key, e);
    return e;
}

/* Another process's file inherited read-only (a sealed memfd: nothing can be written into
 * it) is not found by name: an open here is a file of this process's own. */
static int by_name(const struct shim_inode *ino)
{
    return ino->owner == shim_pid() || ino->writers || ino->force;
}

/* The calling thread's open file of (idx, rel), else (any) another thread's, else NULL. */
static struct shim_inode *pick_locked(int idx, const char *rel, int any)
{
    struct entry *e = find_locked(idx, rel);
    for (int i = 0; e && i < e->n; i++)
        if (pthread_equal(e->v[i]->tid, pthread_self()) && by_name(e->v[i]))
            return e->v[i];
    for (int i = 0; e && any && i < e->n; i++)
        if (by_name(e->v[i]))
            return e->v[i];
    return NULL;
}

/* Takes ino out of the table (table_lock held). */
static void unhash_locked(struct shim_inode *ino)
{
    struct entry *e = ino->hashed ? find_locked(ino->mount_idx, ino->rel) : NULL;
    for (int i = 0; e && i < e->n; i++) {
        if (e->v[i] != ino)
            continue;
        e->v[i] = e->v[--e->n];
        if (e->n == 0) {
            HASH_DEL(table, e);
            free(e->v);
            free(e);
        }
        break;
    }
    ino->hashed = 0;
}

/* Puts ino into the table under its rel (table_lock held). 0 or -ENOMEM. */
static int hash_locked(struct shim_inode *ino)
{
    struct entry *e = find_locked(ino->mount_idx, ino->rel);
    if (!e) {
        size_t n = strlen(ino->rel) + 16;
        if (!(e = calloc(1, sizeof *e + n)))
            return -ENOMEM;
        snprintf(e->key, n, "%d/%s", ino->mount_idx, ino->rel);
        add_failed = 0;
        HASH_ADD_STR(table, key, e);
        if (add_failed) {
            free(e);
            return -ENOMEM;
        }
    }
    struct shim_inode **v = realloc(e->v, (size_t)(e->n + 1) * sizeof *v);
    if (!v) {
        if (e->n == 0) {
            HASH_DEL(table, e);
            free(e);
        }
        return -ENOMEM;
    }
    e->v = v;
    v[e->n++] = ino;
    ino->hashed = 1;
    return 0;
}

struct shim_inode *shim_inode_get(int idx, const char *rel)
{
    pthread_mutex_lock(&table_lock);
    struct shim_inode *ino = pick_locked(idx, rel, 0);
    if (ino) {
        ino->refs++;
        ino->users++;
    }
    pthread_mutex_unlock(&table_lock);
    return ino;
}

struct shim_inode *shim_inode_find(int idx, const char *rel)
{
    pthread_mutex_lock(&table_lock);
    struct shim_inode *ino = pick_locked(idx, rel, 1);
    if (ino)
        ino->refs++;
    pthread_mutex_unlock(&table_lock);
    return ino;
}

static struct shim_inode *inode_new(const struct shim_inode_init *in)
{
    struct shim_inode *ino = calloc(1, sizeof *ino);
    char *rel = ino ? strdup(in->rel) : NULL;
    if (!rel) {
        free(ino);
        return NULL;
    }
    *ino = (struct shim_inode){
        .refs = 1, .users = 1, .mount_idx = in->mount_idx, .rel = rel, .owner = in->owner,
        .rev = in->rev, .mtime_ns = in->mtime_ns, .base_len = in->base_len,
        .base_hash = in->base_hash, .based = in->based, .writers = in->writers,
        .force = in->force, .excl = in->excl, .created = in->created,
        .carried = in->carried, .kfd = -1, .tid = pthread_self(), .forks = shim_forks(),
    };
    pthread_mutex_init(&ino->mu, NULL);
    return ino;
}

static void inode_free(struct shim_inode *ino)
{
    if (ino->kfd >= 0)
        real_close()(ino->kfd);
    for (int i = 0; i < ino->n_old; i++)
        free(ino->old_names[i]);
    free(ino->old_names);
    free(ino->rel);
    pthread_mutex_destroy(&ino->mu);
    free(ino);
}

struct shim_inode *shim_inode_add(const struct shim_inode_init *in, int *raced)
{
    *raced = 0;
    struct shim_inode *ino = inode_new(in);
    if (!ino)
        return NULL;
    pthread_mutex_lock(&table_lock);
    struct shim_inode *had = pick_locked(in->mount_idx, in->rel, 0);
    if (had) {
        /* this thread opened the key meanwhile (a signal handler): share its open file */
        had->refs++;
        had->users++;
        pthread_mutex_unlock(&table_lock);
        inode_free(ino);
        *raced = 1;
        return had;
    }
    int r = hash_locked(ino);
    pthread_mutex_unlock(&table_lock);
    if (r < 0) {
        inode_free(ino);
        return NULL;
    }
    return ino;
}

struct shim_inode *shim_inode_adopt(const struct shim_inode_init *in)
{
    int raced;
    return shim_inode_add(in, &raced);
}

void shim_inode_use(struct shim_inode *ino)
{
    pthread_mutex_lock(&table_lock);
    ino->refs++;
    ino->users++;
    pthread_mutex_unlock(&table_lock);
}

const char *shim_file_rel(const struct shim_file *f)
{
    if (!f->ino)
        return f->rel;
    return __atomic_load_n(&f->ino->rel, __ATOMIC_ACQUIRE);
}

/* ---- the bytes of an inode, for a commit ----
 * Read into a malloc()ed block, or mapped when large: copying is cheaper than mapping and
 * faulting the pages in up to about 512 KiB (measured on the 2-core development VM: 3.7 vs
 * 12 us at 64 KiB, 27 vs 23 us at 512 KiB). */
#define VIEW_MAP_MIN (512 * 1024)

struct view {
    void *data; /* NULL when len is 0 */
    size_t len;
    int mapped;
    int borrowed; /* an in-memory file's own bytes */
};

/* -EBADF when the kernel holds fd write-only (then the caller reopens it read-only). */
static int view_fd(int fd, struct view *v)
{
    struct stat st;
    *v = (struct view){ 0 };
    if (real_fstat()(fd, &st) < 0)
        return -errno;
    if (st.st_size == 0)
        return 0;
    size_t len = (size_t)st.st_size;
    if (len >= VIEW_MAP_MIN) {
        void *p = real_mmap()(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
            return errno == EACCES ? -EBADF : -errno;
        *v = (struct view){ .data = p, .len = len, .mapped = 1 };
        return 0;
    }
    char *buf = malloc(len);
    if (!buf)
        return -ENOMEM;
    size_t done = 0;
    while (done < len) {
        ssize_t n = real_pread()(fd, buf + done, len - done, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int r = n < 0 ? -errno : -EIO;
            free(buf);
            return r;
        }
        done += (size_t)n;
    }
    *v = (struct view){ .data = buf, .len = done };
    return 0;
}

/* A kernel file the shim holds write-only (freopen through /proc) is read through a
 * read-only reopen of it. */
static int view_open(int fd, struct view *v)
{
    int r = view_fd(fd, v);
    if (r != -EBADF)
        return r;
    char proc[32];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    int rfd = real_openat()(AT_FDCWD, proc, O_RDONLY | O_CLOEXEC);
    if (rfd < 0)
        return -errno;
    r = view_fd(rfd, v);
    real_close()(rfd); /* a mapping outlives its descriptor */
    return r;
}

static void view_close(struct view *v, struct shim_mem *m)
{
    if (m)
        shim_mem_unlock(m);
    if (v->borrowed)
        return;
    if (v->mapped)
        munmap(v->data, v->len);
    else
        free(v->data);
}

/* The inode's bytes: the master's, else the in-memory file's (*mp: locked), else fd's. */
static int view_of(struct shim_inode *ino, int fd, struct shim_mem *mem, struct view *v,
                   struct shim_mem **mp)
{
    *mp = NULL;
    if (ino->kfd >= 0)
        return view_open(ino->kfd, v);
    struct shim_mem *m = mem ? shim_mem_lock(mem) : NULL;
    *mp = m;
    if (m) {
        *v = (struct view){ .data = m->data, .len = m->len, .borrowed = 1 };
        return 0;
    }
    return fd >= 0 ? view_open(fd, v) : -EBADF;
}

/* Commits with ino->mu held. final: nothing will compare against this commit again. */
int shim_inode_poison(struct shim_inode *ino, int err)
{
    int was = 0;
    if (ino)
        __atomic_compare_exchange_n(&ino->poison, &was, err, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE);
    return was;
}

int shim_pid_exited(pid_t pid)
{
    if (kill(pid, 0) < 0)
        return errno == ESRCH;
    char path[32], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = real_openat()(AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? real_read()(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0)
        real_close()(fd);
    buf[n > 0 ? n : 0] = '\0';
    const char *st = strrchr(buf, ')'); /* "pid (comm) S ..." */
    return st && (st[2] == 'Z' || st[2] == 'X');
}

static int commit_locked(struct shim_inode *ino, int fd, struct shim_mem *mem, int final)
{
    if (ino->owner != shim_pid() &&
        (ino->unlinked || !ino->writers || !shim_pid_exited(ino->owner)))
        return 0; /* another process's file (inherited): its owner commits it */
    if (ino->owner != shim_pid()) {
        /* its owner exited before this process (which wrote into it) closed it: what is
         * here is this process's to commit now, else it lands nowhere; expecting the
         * revision the owner had, so a commit the owner made at its exit is not overwritten
         * (EEXIST: said, never a close that returns 0 for bytes that did not land) */
        log_at(LOG_INFO, "%s: process %d, which opened it, has exited: committed here",
               ino->rel, (int)ino->owner);
        ino->owner = shim_pid();
    }
    if (ino->unlinked || (!ino->writers && !ino->force))
        return 0;
    int poisoned = __atomic_load_n(&ino->poison, __ATOMIC_ACQUIRE);
    if (poisoned)
        return poisoned; /* a failed write or commit: nothing more is committed */
    struct view v;
    struct shim_mem *m; /* held locked while its bytes are committed */
    int r = view_of(ino, fd, mem, &v, &m);
    if (r < 0)
        return r;
    /* The hash tells whether the bytes changed; a forced final commit needs no answer. */
    uint64_t hash = ino->force && final ? 0 : fdtable_hash(v.data, v.len, FDTABLE_HASH_SEED);
    if (!ino->force && ino->based && v.len == ino->base_len && hash == ino->base_hash) {
        view_close(&v, m);
        return 0;
    }
    const kv_ops *ops;
    kv_mount *km;
    uint64_t rev = 0;
    r = shim_backend(ino->mount_idx, &ops, &km);
    if (r == 0 && ino->carried) {
        /* the revision memory of the program that opened it, carried across exec */
        ops->remember(km, ino->rel, ino->carried);
        ino->carried = 0;
    } else if (r == 0 && ino->rev) {
        /* the revision the shared bytes are based on, whichever thread commits them */
        ops->remember(km, ino->rel, ino->rev);
    }
    if (r == 0)
        r = ops->commit(km, ino->rel, v.data, v.len, ino->excl ? KV_COMMIT_EXCL : 0, &rev);
    view_close(&v, m);
    if (r == 0) {
        struct timespec now; /* the new revision's time, as the client sees it */
        clock_gettime(CLOCK_REALTIME, &now);
        ino->mtime_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
        ino->rev = rev;
        ino->base_len = v.len;
        ino->base_hash = hash;
        ino->based = !(ino->force && final);
        ino->force = 0;
        ino->excl = 0;
        ino->created = 0;
    } else {
        /* the file's bytes never become a value now: a later close or fsync would commit
         * them on a memory the failure changed (a conflict forgets it: a blind put) */
        shim_inode_poison(ino, r);
    }
    return r;
}

int shim_inode_commit(struct shim_inode *ino, int fd, struct shim_mem *mem)
{
    shim_enter(); /* first: a fork holds its lock while it takes every buffer's */
    pthread_mutex_lock(&ino->mu);
    int r = commit_locked(ino, fd, mem, 0);
    pthread_mutex_unlock(&ino->mu);
    shim_leave();
    return r;
}

/* ---- files a forked child still holds at their last close here ----
 * The owner commits a file at its last close (SPEC "Processes"); a child that inherited it
 * (subprocess.Popen(stdout=f), then f.close() before the child is done) may write on. Such a
 * file is kept, by a descriptor of the shim's own and a reference: committed now as always,
 * and again, if its bytes changed, once no child holds it any more (shim_inode_commit_held,
 * after a wait reaps a child) or at this process's exit. A rename or unlink of its name
 * meanwhile is recorded in its entry (held_follow) and applied at that commit. */
#define HELD_MAX 1024
static struct held {
    struct shim_inode *ino;  /* the entry's reference; unhashed: no open finds it */
    int fd;
    unsigned forks, until;   /* the children that may hold it: forked in (forks, until]
                                (later ones inherit only the shim's own descriptor, fd) */
    int orphan;              /* unlinked, or renamed over, since: nothing to commit */
    int moved;               /* renamed since: its commit expects rev_to */
    uint64_t rev_to;
    dev_t dev;               /* fd's kernel file: a program's closefrom can close fd, and */
    ino_t kino;              /* its number come back as another file's */
} held[HELD_MAX];
static int nheld;
/* guards held and nheld, and the rel of the inodes in it; taken under an inode's mu and
 * under table_lock (fork), never the other way: the children's descriptors are scanned
 * under it without holding up any open or close */
static pthread_mutex_t held_mu = PTHREAD_MUTEX_INITIALIZER;
static int reap_pending; /* a wait reaped a child where nothing may be committed (atomic) */

/* With ino->mu held. */
static void hold_locked(struct shim_inode *ino, int kf, pid_t who)
{
    int dfd = real_fcntl()(kf, F_DUPFD_CLOEXEC, 0);
    dfd = dfd >= 0 ? shim_fd_high(dfd) : dfd;
    if (dfd >= 0) {
        pthread_mutex_lock(&table_lock); /* (the entry's reference) */
        ino->refs++;
        pthread_mutex_unlock(&table_lock);
    }
    pthread_mutex_lock(&held_mu);
    struct stat st;
    int ok = dfd >= 0 && nheld < HELD_MAX && real_fstat()(dfd, &st) == 0;
    if (ok)
        held[nheld++] = (struct held){ .ino = ino, .fd = dfd, .forks = ino->forks,
                                       .until = shim_forks(), .dev = st.st_dev,
                                       .kino = st.st_ino };
    pthread_mutex_unlock(&held_mu);
    if (ok) {
        log_at(LOG_INFO, "%s: closed here while process %d still has it open: committed now, "
               "and again when no child holds it or at exit", ino->rel, (int)who);
        return;
    }
    if (dfd >= 0) {
        real_close()(dfd);
        pthread_mutex_lock(&table_lock); /* the caller's reference remains */
        ino->refs--;
        pthread_mutex_unlock(&table_lock);
    }
    log_at(LOG_WARN, "%s: closed here while process %d still has it open: committed now; what "
           "it writes from now on is lost", ino->rel, (int)who);
}

void shim_inode_reaped_later(void)
{
    __atomic_store_n(&reap_pending, 1, __ATOMIC_RELEASE);
}

void shim_inode_commit_reaped(void)
{
    if (__atomic_load_n(&reap_pending, __ATOMIC_ACQUIRE) &&
        __atomic_exchange_n(&reap_pending, 0, __ATOMIC_ACQ_REL))
        (void)shim_inode_commit_held(0);
}

int shim_inode_commit_held(int at_exit)
{
    int rc = 0;
    if (!__atomic_load_n(&nheld, __ATOMIC_ACQUIRE))
        return 0;
    for (;;) {
        struct held h = { .ino = NULL, .fd = -1 };
        pid_t who = 0;
        pthread_mutex_lock(&held_mu);
        for (int i = 0; i < nheld && !h.ino; i++) {
            who = shim_child_holding(held[i].fd, held[i].forks, held[i].until);
            if (at_exit || who <= 0) {
                h = held[i];
                held[i] = held[--nheld];
            }
        }
        pthread_mutex_unlock(&held_mu);
        if (!h.ino)
            return rc;
        struct stat st;
        if (real_fstat()(h.fd, &st) < 0 || st.st_dev != h.dev || st.st_ino != h.kino) {
            log_at(LOG_WARN, "%s: the shim's descriptor of it was closed by the program "
                   "(closefrom, close_range?): what a child wrote after its close here is "
                   "lost", h.ino->rel);
            shim_inode_put(h.ino); /* (that number is not the shim's to close now) */
            continue;
        }
        shim_enter();
        pthread_mutex_lock(&h.ino->mu);
        if (h.orphan)
            h.ino->unlinked = 1; /* (commits nothing) */
        if (h.moved) {
            h.ino->rev = h.rev_to;
            h.ino->carried = 0;
        }
        int r = commit_locked(h.ino, h.fd, NULL, 1);
        pthread_mutex_unlock(&h.ino->mu);
        shim_leave();
        if (r < 0) {
            log_at(LOG_ERROR, "%s: the commit of what a child wrote after its close here "
                   "failed: %s", h.ino->rel, strerror(-r));
            rc = r;
        }
        if (at_exit && who > 0)
            log_at(LOG_WARN, "%s: process %d still has it open as this one exits: it "
                   "commits what it writes from now on, at its close or exit (EEXIST there "
                   "when this exit's commit changed the key)", h.ino->rel, (int)who);
        real_close()(h.fd);
        shim_inode_put(h.ino);
    }
}

/* A conflict at a last close: close's error is the one programs ignore (shells do), so the
 * first for each key in a process is said on stderr too; later ones (a retry loop's) are
 * the program's to handle, at info. Up to CONFLICTS_MAX keys are remembered (then every
 * one is said). */
#define CONFLICTS_MAX 4096
static struct said {
    UT_hash_handle hh;
    char key[]; /* "idx/rel" */
} *said;
static unsigned nsaid;
static pthread_mutex_t said_mu = PTHREAD_MUTEX_INITIALIZER; /* a leaf lock */

static void conflict_said(const struct shim_inode *ino)
{
    char key[32 + PATH_MAX];
    int n = snprintf(key, sizeof key, "%d/%s", ino->mount_idx, ino->rel);
    struct said *e = NULL;
    int first = 1;
    pthread_mutex_lock(&said_mu);
    if (n > 0 && (size_t)n < sizeof key) {
        HASH_FIND(hh, said, key, (size_t)n, e);
        first = !e;
        if (!e && nsaid < CONFLICTS_MAX && (e = malloc(sizeof *e + (size_t)n + 1))) {
            memcpy(e->key, key, (size_t)n + 1);
            HASH_ADD(hh, said, key, (size_t)n, e);
            nsaid++;
        }
    }
    pthread_mutex_unlock(&said_mu);
    log_at(first ? LOG_WARN : LOG_INFO, "%s: not stored: another writer changed it since it "
           "was read here (compare-and-set conflict: close returns EEXIST%s)", ino->rel,
           first ? "; later conflicts of this file here are logged at info" : "");
}

int shim_inode_close(struct shim_inode *ino, int fd, struct shim_mem *mem)
{
    pthread_mutex_lock(&table_lock);
    int last = --ino->users == 0;
    if (last)
        unhash_locked(ino); /* an open from now on reads the server afresh */
    pthread_mutex_unlock(&table_lock);
    if (!last)
        return 0;
    shim_enter();
    pthread_mutex_lock(&ino->mu);
    int r = commit_locked(ino, fd, mem, 1);
    if (r == -EEXIST)
        conflict_said(ino);
    int kf = ino->kfd >= 0 ? ino->kfd : fd;
    int kernel = !mem || __atomic_load_n(&mem->settled, __ATOMIC_ACQUIRE); /* not in memory */
    pid_t who = r == 0 && kf >= 0 && kernel && ino->owner == shim_pid() && !ino->unlinked &&
                (ino->writers || ino->force) /* (a read-only file: nothing a child can add) */
              ? shim_child_holding(kf, ino->forks, shim_forks()) : 0;
    struct view v;
    if (who > 0 && view_open(kf, &v) == 0) {
        /* what is committed now is what a later commit compares with */
        ino->base_len = v.len;
        ino->base_hash = fdtable_hash(v.data, v.len, FDTABLE_HASH_SEED);
        ino->based = 1;
        ino->force = 0;
        view_close(&v, NULL);
        hold_locked(ino, kf, who);
    }
    if (ino->kfd >= 0)
        real_close()(ino->kfd);
    ino->kfd = -1;
    pthread_mutex_unlock(&ino->mu);
    shim_leave();
    return r;
}

int shim_inode_close_written(struct shim_inode *ino, int fd, struct shim_mem *mem)
{
    /* Another descriptor of it stays open: what this one wrote is committed now, as fsync
     * would, so that this close's success means its bytes landed (a later conflict at the
     * last close cannot take them back). The last close commits what the others add. */
    pthread_mutex_lock(&table_lock);
    int others = ino->users > 1;
    pthread_mutex_unlock(&table_lock);
    int r = others ? shim_inode_commit(ino, fd, mem) : 0;
    if (r == -EEXIST)
        conflict_said(ino);
    int c = shim_inode_close(ino, fd, mem);
    return r < 0 ? r : c;
}

void shim_inode_put(struct shim_inode *ino)
{
    pthread_mutex_lock(&table_lock);
    int last = --ino->refs == 0;
    pthread_mutex_unlock(&table_lock);
    if (last)
        inode_free(ino);
}

void fdtable_free_ino(struct shim_file *f)
{
    if (!f->closed) { /* its descriptors went without a close the shim saw */
        f->closed = 1;
        int r = shim_inode_close(f->ino, -1, f->mem); /* the master's or memory's bytes */
        if (f->lost)
            shim_log_lost(f, -1, 1, r);
    }
    shim_inode_put(f->ino);
}

/* ---- sharing: the master memfd ---- */

struct fds_of {
    struct shim_inode *ino;
    int fd[64];
    struct shim_file *f[64];
    int n, more;
};

/* fdtable_each's callback. The descriptors found stay the inode's while ino->mu is held:
 * a close takes them out of the table under it (shim_drop). */
static void collect(int fd, struct shim_file *f, void *arg)
{
    struct fds_of *c = arg;
    if (f->ino != c->ino)
        return;
    if (c->n == 64) {
        c->more = 1;
        return;
    }
    c->fd[c->n] = fd;
    c->f[c->n++] = f;
}

/* A new open file description of the master with oflags' access mode and status flags. */
static int reopen(int kfd, int oflags)
{
    char proc[32];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", kfd);
    int fl = (oflags & (O_ACCMODE | O_APPEND | O_NONBLOCK | O_CLOEXEC)) |
             ((oflags & O_ACCMODE) != O_RDONLY ? (oflags & O_TRUNC) : 0);
    int fd = real_openat()(AT_FDCWD, proc, fl);
    return fd < 0 ? -errno : fd;
}

/* For the record whose descriptor fd is: *nfd a reopen of the master with fd's status flags
 * and offset, *old a copy of fd's own open file description (to move back to). */
static int prepare_move(int kfd, int fd, int *nfd, int *old)
{
    int fl = real_fcntl()(fd, F_GETFL, NULL);
    off_t pos = real_lseek()(fd, 0, SEEK_CUR);
    if (fl < 0)
        return -errno;
    if ((*nfd = reopen(kfd, (fl & ~O_TRUNC) | O_CLOEXEC)) < 0)
        return *nfd;
    if (pos > 0 && real_lseek()(*nfd, pos, SEEK_SET) < 0)
        return -errno;
    *old = real_fcntl()(fd, F_DUPFD_CLOEXEC, (void *)0L);
    return *old < 0 ? -errno : 0;
}

/* Moves every descriptor collected in c onto the master: one reopen per record (its
 * descriptors share one open file description, so they get one new one), keeping offset,
 * status flags and FD_CLOEXEC. All or nothing: what can fail is done before the first
 * descriptor moves, and a move that fails later puts the moved ones back. When even that
 * fails the file's bytes are split across two buffers: it is poisoned (its close fails,
 * nothing is committed) and the failure logged, never a silent loss. */
static int move_all(struct shim_inode *ino, int kfd, const struct fds_of *c)
{
    const struct shim_file *rec[64];
    int nfd[64], old[64], grp[64] = { 0 }, fdfl[64] = { 0 }, ng = 0, r = 0;
    for (int g = 0; g < 64; g++)
        nfd[g] = old[g] = -1;
    for (int i = 0; r == 0 && i < c->n; i++) {
        int g = 0;
        while (g < ng && rec[g] != c->f[i])
            g++;
        grp[i] = g;
        if ((fdfl[i] = real_fcntl()(c->fd[i], F_GETFD, NULL)) < 0)
            r = -errno;
        else if (g == ng) {
            rec[ng++] = c->f[i];
            r = prepare_move(kfd, c->fd[i], &nfd[g], &old[g]);
        }
    }
    int moved = 0;
    while (r == 0 && moved < c->n) {
        int i = moved;
        if (real_dup3()(nfd[grp[i]], c->fd[i], (fdfl[i] & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0)
            r = -errno;
        else
            moved++;
    }
    uint64_t kid = r == 0 ? shim_fd_kid(kfd) : 0; /* a reopen of the master is its file */
    for (int i = 0; r == 0 && i < c->n; i++)
        __atomic_store_n(&c->f[i]->kid, kid, __ATOMIC_RELEASE);
    int split = 0;
    for (int i = 0; r < 0 && i < moved; i++)
        if (real_dup3()(old[grp[i]], c->fd[i], (fdfl[i] & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0)
            split = 1;
    if (split) {
        shim_inode_poison(ino, -EIO);
        log_at(LOG_ERROR, "%s: its descriptors could not all be moved to one buffer (%s), "
               "nor back: it will not be committed", ino->rel, strerror(-r));
    }
    for (int g = 0; g < ng; g++) {
        if (nfd[g] >= 0)
            real_close()(nfd[g]);
        if (old[g] >= 0)
            real_close()(old[g]);
    }
    return r;
}

/* With ino->mu held, inside the guard. */
static int share_locked(struct shim_inode *ino)
{
    if (ino->kfd >= 0)
        return 0;
    struct fds_of c = { .ino = ino };
    fdtable_each(collect, &c);
    if (c.more)
        return -EMFILE;
    if (c.n == 0)
        return -EBADF; /* its last descriptor is closing: no bytes to share (never an empty
                          master, which the commit would prefer) */
    for (int i = 0; i < c.n; i++) {
        int s = shim_mem_settle_own(c.fd[i]);
        if (s < 0)
            return s;
    }
    if (ino->owner != shim_pid()) {
        /* Another process's open file, inherited (a shell's `exec 3>>f`, then a child that
         * opens f by name): its kernel file is the master, so what is written here lands in
         * the bytes its owner commits, as on a disk. A copy would hold them where no one
         * commits them. */
        for (int i = 0; i < c.n; i++) {
            int kfd = reopen(c.fd[i], O_RDWR | O_CLOEXEC);
            if (kfd >= 0) {
                ino->kfd = shim_fd_high(kfd);
                return 0;
            }
        }
        /* Opened read-only there (a sealed memfd): this process's copy below, which it
         * commits from now on (its owner has nothing to commit: it cannot write) */
        ino->owner = shim_pid();
    }
    /* the bytes as they are now, into a read-write memfd of the inode's own */
    struct view v = { 0 };
    int r = c.n ? view_open(c.fd[0], &v) : 0;
    if (r < 0)
        return r;
    int kfd = shim_buffer_open(v.data, v.len, O_RDWR | O_CLOEXEC);
    view_close(&v, NULL);
    if (kfd < 0)
        return kfd;
    kfd = shim_fd_high(kfd);
    r = move_all(ino, kfd, &c);
    if (r < 0) {
        real_close()(kfd);
        return r;
    }
    ino->kfd = kfd;
    return 0;
}

int shim_inode_share(struct shim_inode *ino)
{
    shim_enter();
    pthread_mutex_lock(&ino->mu);
    int r = share_locked(ino);
    pthread_mutex_unlock(&ino->mu);
    shim_leave();
    return r;
}

int shim_inode_truncate(struct shim_inode *ino, off_t len)
{
    shim_enter();
    pthread_mutex_lock(&ino->mu);
    int r = share_locked(ino);
    struct view v;
    if (r == 0 && !ino->based && (r = view_open(ino->kfd, &v)) == 0) {
        /* what "changed" is measured from, as for a first writer */
        ino->base_len = v.len;
        ino->base_hash = fdtable_hash(v.data, v.len, FDTABLE_HASH_SEED);
        ino->based = 1;
        view_close(&v, NULL);
    }
    if (r == 0 && real_ftruncate()(ino->kfd, len) < 0)
        r = -errno;
    if (r == 0)
        ino->writers = 1; /* committed at its last close, if its bytes changed */
    pthread_mutex_unlock(&ino->mu);
    shim_leave();
    return r;
}

int shim_inode_open(struct shim_inode *ino, int oflags)
{
    shim_enter();
    pthread_mutex_lock(&ino->mu);
    int r = share_locked(ino);
    if (r == 0 && (oflags & O_ACCMODE) != O_RDONLY && !ino->based) {
        /* the first writer: the bytes as they are now are what "changed" is measured from */
        struct view v;
        r = view_open(ino->kfd, &v);
        if (r == 0) {
            ino->base_len = v.len;
            ino->base_hash = fdtable_hash(v.data, v.len, FDTABLE_HASH_SEED);
            ino->based = 1;
            view_close(&v, NULL);
        }
    }
    int fd = r < 0 ? r : reopen(ino->kfd, oflags);
    if (fd >= 0 && (oflags & O_ACCMODE) != O_RDONLY) {
        ino->writers = 1;
        if (oflags & O_TRUNC)
            ino->force = 1;
    }
    pthread_mutex_unlock(&ino->mu);
    shim_leave();
    return fd;
}

struct size_of {
    struct shim_inode *ino;
    int found;
    int err;                /* the fstat's -errno */
    size_t len;
    struct shim_file *busy; /* an in-memory file whose lock was taken: held, to wait on */
};

/* fdtable_each's callback, under the table's mutex: fd is still this record's descriptor
 * (a close takes it out of the table before the kernel's close), so its fstat cannot meet
 * a number another thread closed and reused. An in-memory file's lock may be held across a
 * commit (a network request): never waited on here, where every hook would wait with us. */
static void first_fd(int fd, struct shim_file *f, void *arg)
{
    struct size_of *s = arg;
    if (f->ino != s->ino || s->found)
        return;
    s->found = 1;
    if (f->mem && pthread_mutex_trylock(&f->mem->mu) != 0) {
        f->refs++; /* the table's mutex guards refs */
        s->busy = f;
        return;
    }
    int in_memory = f->mem && !f->mem->settled;
    if (in_memory)
        s->len = f->mem->len;
    if (f->mem)
        pthread_mutex_unlock(&f->mem->mu);
    struct stat st;
    if (in_memory)
        return;
    if (real_fstat()(fd, &st) < 0)
        s->err = -errno;
    else
        s->len = (size_t)st.st_size;
}

int shim_inode_size(struct shim_inode *ino, size_t *len)
{
    for (;;) {
        pthread_mutex_lock(&ino->mu); /* the master is closed under it: never a reused number */
        if (ino->kfd >= 0) {
            struct stat st;
            int r = real_fstat()(ino->kfd, &st) < 0 ? -errno : 0;
            pthread_mutex_unlock(&ino->mu);
            if (r == 0)
                *len = (size_t)st.st_size;
            return r;
        }
        pthread_mutex_unlock(&ino->mu);
        struct size_of s = { .ino = ino };
        fdtable_each(first_fd, &s);
        if (!s.found)
            return -EBADF;
        if (!s.busy) {
            *len = s.len;
            return s.err;
        }
        /* its lock is busy (a commit, a write): wait for it here, holding the record only */
        struct shim_mem *m = shim_mem_lock(s.busy->mem);
        if (m) {
            *len = m->len;
            shim_mem_unlock(m);
        }
        fdtable_unref(s.busy);
        if (m)
            return 0;
        /* settled meanwhile: ask again, now of its kernel file */
    }
}

/* ---- names ---- */

/* Files closed here while a child still holds them (held, above) follow a rename of their
 * name (to: the new one; their next commit expects rev_to, the renamed value's revision) or
 * are orphaned by an unlink or a rename over them (to NULL), as the child's descriptor would
 * be on a local disk. */
static void held_follow(int idx, const char *from, const char *to, uint64_t rev_to)
{
    if (!__atomic_load_n(&nheld, __ATOMIC_ACQUIRE))
        return;
    pthread_mutex_lock(&held_mu);
    for (int i = 0; i < nheld; i++) {
        struct held *e = &held[i];
        struct shim_inode *h = e->ino;
        if (e->orphan || h->mount_idx != idx || strcmp(h->rel, from) != 0)
            continue;
        char *name = to ? strdup(to) : NULL;
        char **old = name ? realloc(h->old_names, (size_t)(h->n_old + 1) * sizeof *old)
                          : NULL;
        if (!old) { /* unlinked (or out of memory: orphaned, never committed by its old name) */
            free(name);
            e->orphan = 1;
            continue;
        }
        h->old_names = old;
        old[h->n_old++] = h->rel; /* a reader may still hold it */
        __atomic_store_n(&h->rel, name, __ATOMIC_RELEASE);
        e->moved = 1;
        e->rev_to = rev_to;
    }
    pthread_mutex_unlock(&held_mu);
}

/* Detaches every open file of (idx, rel): 1 when one of them exists here whatever the server
 * holds: created by an open and never committed, or truncated (O_TRUNC: not read, so the
 * key may be absent) and not committed since. */
static int detach_all(int idx, const char *rel)
{
    int created = 0;
    for (;;) {
        pthread_mutex_lock(&table_lock);
        struct shim_inode *ino = pick_locked(idx, rel, 1);
        if (ino) {
            unhash_locked(ino);
            ino->refs++;
        }
        pthread_mutex_unlock(&table_lock);
        if (!ino) {
            held_follow(idx, rel, NULL, 0);
            return created;
        }
        pthread_mutex_lock(&ino->mu);
        created |= ino->created || ino->force;
        ino->unlinked = 1;
        pthread_mutex_unlock(&ino->mu);
        shim_inode_put(ino);
    }
}

int shim_inode_unlink(int idx, const char *rel)
{
    return detach_all(idx, rel);
}

/* Moves one open file to its new name (table_lock held). 0 or -ENOMEM. */
static int move_locked(struct shim_inode *ino, char *name)
{
    char **old = realloc(ino->old_names, (size_t)(ino->n_old + 1) * sizeof *old);
    if (!old)
        return -ENOMEM;
    unhash_locked(ino);
    ino->old_names = old;
    old[ino->n_old++] = ino->rel; /* a reader may still hold it */
    __atomic_store_n(&ino->rel, name, __ATOMIC_RELEASE);
    hash_locked(ino); /* on failure it is simply not found by name */
    return 0;
}

int shim_inode_rename(int idx, const char *from, const char *to, uint64_t rev_to,
                      uint64_t rev_from)
{
    detach_all(idx, to); /* replaced: an open file of that name is orphaned */
    int created = 0;
    for (;;) {
        char *name = strdup(to);
        if (!name)
            return -ENOMEM;
        pthread_mutex_lock(&table_lock);
        struct shim_inode *ino = pick_locked(idx, from, 1);
        int r = ino ? move_locked(ino, name) : 0;
        if (ino && r == 0)
            ino->refs++;
        pthread_mutex_unlock(&table_lock);
        if (!ino || r < 0) {
            free(name);
            if (r == 0)
                held_follow(idx, from, to, rev_to);
            return r < 0 ? r : created;
        }
        pthread_mutex_lock(&ino->mu);
        created |= ino->created;
        /* Its bytes are based on the revision it read: when the rename copied another (a
         * writer changed the source since), its commit keeps expecting the one it read, so
         * it conflicts under the new name instead of overwriting that writer's update. */
        if (!(ino->rev && ino->rev != KV_REV_ABSENT && rev_from && ino->rev != rev_from))
            ino->rev = rev_to;
        ino->carried = 0;
        ino->excl = 0;
        ino->force = ino->force || ino->writers; /* a read-only one commits nothing */
        ino->created = ino->created && rev_to == KV_REV_ABSENT;
        pthread_mutex_unlock(&ino->mu);
        shim_inode_put(ino);
    }
}

void shim_inode_each_created(int idx, const char *dir,
                             void (*fn)(const char *name, void *arg), void *arg)
{
    size_t dl = strlen(dir);
    pthread_mutex_lock(&table_lock);
    for (struct entry *e = table; e; e = e->hh.next) {
        int created = 0;
        for (int i = 0; i < e->n; i++)
            created |= e->v[i]->created && e->v[i]->mount_idx == idx;
        if (!created)
            continue;
        const char *rel = e->v[0]->rel;
        if (dl && (strncmp(rel, dir, dl) != 0 || rel[dl] != '/'))
            continue;
        const char *name = dl ? rel + dl + 1 : rel;
        if (!strchr(name, '/'))
            fn(name, arg);
    }
    pthread_mutex_unlock(&table_lock);
}

void shim_inode_fork_lock(void)
{
    pthread_mutex_lock(&table_lock);
    pthread_mutex_lock(&held_mu);
}

void shim_inode_fork_unlock(int child)
{
    if (!child) {
        pthread_mutex_unlock(&held_mu);
        pthread_mutex_unlock(&table_lock);
        return;
    }
    /* The child owns none of these (it never commits them), but they are its open files as
     * much as the parent's: an open of the same key by name in the child (a shell's
     * `cmd >> f` while it holds `exec 3>>f`) shares one, its writes landing in the kernel
     * file the parent commits (share_locked), as on a disk. The held files are the
     * parent's to commit: the child drops its copies of their descriptors. */
    for (struct entry *e = table; e; e = e->hh.next)
        for (int i = 0; i < e->n; i++)
            pthread_mutex_init(&e->v[i]->mu, NULL);
    for (int i = 0; i < nheld; i++) {
        pthread_mutex_init(&held[i].ino->mu, NULL);
        real_close()(held[i].fd);
    }
    nheld = 0; /* (their references stay: the parent's memory, left as it is) */
    pthread_mutex_init(&held_mu, NULL);
    pthread_mutex_init(&said_mu, NULL); /* (taken outside the fork lock) */
    pthread_mutex_init(&table_lock, NULL);
}
