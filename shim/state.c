/* state.c: the shim's process-wide state: the mount table (parsed on the first hooked call
 * that carries a path), the cached working directory, path resolution, the kv backend
 * (dlopen()ed on the first operation on a mount path) and the identity stat reports.
 *
 * Locks: cwd_lock guards cwd/cwd_ok; backend_lock guards kms[]. Neither is held across a call
 * into the backend that may reach the network (mount() only builds a handle). */
#include "shim/shim.h"

#include "shim/inode.h"
#include "shim/mem.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

extern char **environ;

#include "common/log.h"
#include "shim/path.h"

__thread int shim_guard __attribute__((tls_model("initial-exec")));

/* Readers: threads inside the shim; writer: fork. Writers first, so a fork is not starved. */
static pthread_rwlock_t fork_lock = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;

/* errno as the program left it when this thread entered: a hook that succeeds returns with
 * it unchanged, whatever the backend's calls did to it (failures set it in shim_fail). */
static __thread int saved_errno __attribute__((tls_model("initial-exec")));

void shim_enter(void)
{
    if (shim_guard++ == 0) {
        saved_errno = errno;
        pthread_rwlock_rdlock(&fork_lock);
    }
}

void shim_leave(void)
{
    if (--shim_guard == 0) {
        pthread_rwlock_unlock(&fork_lock);
        errno = saved_errno;
    }
}

static pthread_mutex_t cwd_lock = PTHREAD_MUTEX_INITIALIZER;

void shim_fork_lock(void)
{
    pthread_rwlock_wrlock(&fork_lock);
    /* No open can run now (opens hold fork_lock shared): the child inherits kernel files
     * only, shared with the parent, offsets included. */
    shim_mem_settle_all();
    shim_inode_maps_fork_lock();
    shim_inode_fork_lock();
    fdtable_fork_lock();
    pthread_mutex_lock(&cwd_lock);
    shim_dirs_fork_lock();
}

void shim_fork_unlock(int child)
{
    shim_dirs_fork_unlock(child);
    fdtable_fork_unlock(child);
    shim_inode_fork_unlock(child);
    shim_inode_maps_fork_unlock(child);
    /* In the child the locks' owner (a thread id) no longer exists: start afresh. */
    if (child) {
        shim_mem_after_fork_child();
        pthread_mutex_init(&cwd_lock, NULL);
        fork_lock = (pthread_rwlock_t)PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
    } else {
        pthread_mutex_unlock(&cwd_lock);
        pthread_rwlock_unlock(&fork_lock);
    }
}

#define KV_LIB_NAME "libasya-state-kv.so"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static struct mount_table mounts;
static pid_t pid_cache;
static uid_t uid_cache;
static gid_t gid_cache;

static char cwd[PATH_MAX];
static int cwd_ok;
static int cwd_virtual; /* cwd is a mount directory the kernel does not know (read unlocked
                           by shim_cwd_virtual, written under cwd_lock) */

/* The backend is loaded by the first mount operation, under load_lock (taken before
 * backend_lock, never with it held). A failure for want of descriptors or memory is retried by
 * the next operation (EMFILE at the first touch is not a broken install); any other failure
 * is kept in load_failed and answered for good. */
static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
static int load_failed;     /* guarded by load_lock */
static pthread_mutex_t backend_lock = PTHREAD_MUTEX_INITIALIZER;
static const kv_ops *ops;
static kv_mount *kms[MOUNTS_MAX];

/* The environment, read in one pass the first time it is needed: the shim's own variables,
 * and the screen, the first path component of every mount taken from the raw mount
 * variables, so an absolute path whose first component matches none of them is known to be
 * local before (and without) the mount table being built. Most programs never build it. */
#define SCREEN_ALL (-1) /* an odd mount variable: screen nothing, build the table */
static int env_state; /* 0 not scanned, 1 being scanned, 2 done: the hot path's check */
static const char *env_vals[SHIM_ENV_COUNT];
static struct {
    const char *s;
    size_t len;
} screen[MOUNTS_MAX + 1];
static int nscreen;
static uint64_t screen_first[4]; /* the screen's first bytes, as the scan builds them */

/* What shim_foreign (shim.h) and screen_may_match read: screen_first with '/' and '.' added
 * (normalisation decides those), published once the scan is done; all ones before that,
 * and when nothing can be screened (SCREEN_ALL). */
uint64_t shim_screen_bits[4] = { ~0ULL, ~0ULL, ~0ULL, ~0ULL };

/* The scan runs in every process that ever makes a hooked call, so it calls nothing of libc:
 * each libc function's first call through the PLT costs about 700 instructions to bind,
 * as much as the rest of the scan (measured with callgrind on `cat /etc/hostname`). */
static size_t in_set(char c, const char *set)
{
    for (; *set; set++)
        if (*set == c)
            return 1;
    return 0;
}

static size_t cspan(const char *s, const char *stop)
{
    size_t n = 0;
    while (s[n] && !in_set(s[n], stop))
        n++;
    return n;
}

static size_t span(const char *s, const char *set)
{
    size_t n = 0;
    while (s[n] && in_set(s[n], set))
        n++;
    return n;
}

/* s past prefix, or NULL when s does not start with it. */
static const char *after(const char *s, const char *prefix)
{
    while (*prefix && *s == *prefix)
        s++, prefix++;
    return *prefix ? NULL : s;
}

/* Adds the first component of mount path p (ending at one of the bytes in stop) to the
 * screen; an unusual path (relative, "//", ".", "..", empty) turns the screen off. */
static void screen_add(const char *p, const char *stop)
{
    if (nscreen == SCREEN_ALL)
        return;
    size_t len = p[0] == '/' ? cspan(p + 1, stop) : 0;
    size_t comp = p[0] == '/' ? cspan(p + 1, "/") : 0;
    if (comp < len)
        len = comp;
    if (len == 0 || nscreen > MOUNTS_MAX || p[1] == '.') {
        nscreen = SCREEN_ALL;
        return;
    }
    screen[nscreen].s = p + 1;
    screen[nscreen].len = len;
    screen_first[(unsigned char)p[1] >> 6] |= 1ULL << ((unsigned char)p[1] & 63);
    nscreen++;
}

static void env_scan(void)
{
    static const char *const names[SHIM_ENV_COUNT] = {
        [SHIM_ENV_PROXY_MOUNTS] = "ASYA_STATE_PROXY_MOUNTS=",
        [SHIM_ENV_STATE_MOUNT] = "STATE_MOUNT=",
        [SHIM_ENV_HANDOFF] = "ASYA_STATE_HANDOFF=",
        [SHIM_ENV_CWD] = "ASYA_STATE_CWD=",
        [SHIM_ENV_BUFFER] = "ASYA_STATE_BUFFER=",
    };
    for (char **e = environ; e && *e; e++) {
        if ((*e)[0] != 'A' && (*e)[0] != 'S')
            continue;
        for (int i = 0; i < SHIM_ENV_COUNT; i++) {
            const char *v = after(*e, names[i]);
            if (v)
                env_vals[i] = v;
        }
    }
    const char *pm = env_vals[SHIM_ENV_PROXY_MOUNTS];
    if (pm && pm[span(pm, " \t;")]) {
        /* entries name:path[:opts] joined by ';' (a malformed value falls back to /state) */
        screen_add("/state", "");
        for (const char *e = pm; *e; e += *e == ';') {
            size_t len = cspan(e, ";"), key = cspan(e, ":;");
            if (key < len)
                screen_add(e + key + 1, ":;");
            else if (span(e, " \t;") < len)
                nscreen = SCREEN_ALL; /* an entry without a path: let the parser judge */
            e += len;
        }
    } else {
        const char *sm = env_vals[SHIM_ENV_STATE_MOUNT];
        screen_add(sm && *sm ? sm : "/state", "");
    }
}

/* Each word is stored whole: a reader sees all ones (and asks screen_may_match) or the
 * final word, which gives the answer screen_may_match would. */
static void screen_publish(void)
{
    uint64_t bits[4] = { ~0ULL, ~0ULL, ~0ULL, ~0ULL };
    if (nscreen != SCREEN_ALL) {
        for (int i = 0; i < 4; i++)
            bits[i] = screen_first[i];
        bits['/' >> 6] |= 1ULL << ('/' & 63);
        bits['.' >> 6] |= 1ULL << ('.' & 63);
    }
    for (int i = 0; i < 4; i++)
        __atomic_store_n(&shim_screen_bits[i], bits[i], __ATOMIC_RELAXED);
}

/* env_scan once per process, without pthread_once (a libc call, see above): the first
 * caller scans, any other waits until it is done (microseconds, once). */
static void env_ensure_slow(void)
{
    int expect = 0;
    if (__atomic_compare_exchange_n(&env_state, &expect, 1, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
        env_scan();
        screen_publish(); /* first: a child forked after env_state is 2 inherits the bits */
        __atomic_store_n(&env_state, 2, __ATOMIC_RELEASE);
        return;
    }
    while (__atomic_load_n(&env_state, __ATOMIC_ACQUIRE) != 2)
        __asm__ volatile("" ::: "memory");
}

static inline void env_ensure(void)
{
    if (__atomic_load_n(&env_state, __ATOMIC_ACQUIRE) != 2)
        env_ensure_slow();
}

const char *shim_env(enum shim_env var)
{
    env_ensure();
    return env_vals[var];
}

/* 0 when absolute path cannot be under any mount (its first component is on no mount). */
static int screen_may_match(const char *path)
{
    env_ensure();
    if (nscreen == SCREEN_ALL)
        return 1;
    unsigned char c = (unsigned char)path[1];
    if (!(shim_screen_bits[c >> 6] >> (c & 63) & 1))
        return 0; /* no mount starts with this byte (published before env_state is 2) */
    while (*path == '/')
        path++;
    if (path[0] == '.')
        return 1; /* "/./state", "/../state": let normalisation decide */
    for (int i = 0; i < nscreen; i++) {
        size_t len = screen[i].len;
        if (strncmp(screen[i].s, path, len) == 0 && (path[len] == '/' || path[len] == '\0'))
            return 1;
    }
    return 0;
}

static void after_fork_child(void)
{
    pid_cache = getpid();
    /* The child never uses the parent's connection (SPEC "Processes"). */
    if (ops)
        ops->after_fork_child();
}

/* (dev, ino) of every directory on the local disk that is a mount path or one of its
 * ancestors ("/" included): the only real directories from which a relative name without
 * ".." can reach a mount, so *at() calls on any other directory need no readlink. Built with
 * the mount table; -1 when there are too many to keep (then every such call resolves). */
#define ANCESTORS_MAX 64
static struct {
    dev_t dev;
    ino_t ino;
} ancestors[ANCESTORS_MAX];
static int nancestors;

static void ancestors_add(const char *dir)
{
    struct stat st;
    if (nancestors < 0 || real_fstatat()(AT_FDCWD, dir, &st, 0) < 0 || !S_ISDIR(st.st_mode))
        return;
    for (int i = 0; i < nancestors; i++)
        if (ancestors[i].dev == st.st_dev && ancestors[i].ino == st.st_ino)
            return;
    if (nancestors == ANCESTORS_MAX) {
        nancestors = -1;
        return;
    }
    ancestors[nancestors].dev = st.st_dev;
    ancestors[nancestors].ino = st.st_ino;
    nancestors++;
}

static void ancestors_build(void)
{
    ancestors_add("/");
    for (int i = 0; i < mounts.n; i++) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", mounts.m[i].path);
        for (char *slash = strchr(dir + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
            *slash = '\0';
            ancestors_add(dir);
            *slash = '/';
        }
        ancestors_add(dir);
    }
}

/* 1 when the directory behind dirfd may lead to a mount by a name without "..". */
static int may_lead_to_mount(int dirfd, const char *path)
{
    if (nancestors < 0)
        return 1;
    for (const char *c = path; *c;) {
        if (c[0] == '.' && c[1] == '.' && (c[2] == '/' || c[2] == '\0'))
            return 1;
        c = strchr(c, '/');
        if (!c)
            break;
        c++;
    }
    struct stat st;
    if (real_fstat()(dirfd, &st) < 0)
        return 1; /* let the full resolution decide */
    for (int i = 0; i < nancestors; i++)
        if (ancestors[i].dev == st.st_dev && ancestors[i].ino == st.st_ino)
            return 1;
    return 0;
}

static void init(void)
{
    struct mount_env env = {
        .proxy_mounts = shim_env(SHIM_ENV_PROXY_MOUNTS),
        .state_mount = shim_env(SHIM_ENV_STATE_MOUNT),
        .bucket = getenv("NATS_KV_BUCKET"),
        .prefix = getenv("STATE_PREFIX"),
        .read_cache = getenv("STATE_READ_CACHE"),
    };
    shim_enter();
    /* Problems are reported when a program first touches a mount path, not before. */
    log_hold();
    mounts_parse(&env, &mounts);
    log_release();
    ancestors_build();
    shim_leave();
    pid_cache = getpid();
    uid_cache = getuid();
    gid_cache = getgid();
    pthread_atfork(NULL, NULL, after_fork_child);
}

pid_t shim_pid(void)
{
    pthread_once(&init_once, init);
    return pid_cache;
}

const struct mount *shim_mount(int idx)
{
    return &mounts.m[idx];
}

void shim_cwd_changed(void)
{
    pthread_mutex_lock(&cwd_lock);
    cwd_ok = 0;
    __atomic_store_n(&cwd_virtual, 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&cwd_lock);
}

void shim_cwd_set_virtual(const char *dir)
{
    pthread_mutex_lock(&cwd_lock);
    snprintf(cwd, sizeof cwd, "%s", dir);
    cwd_ok = 1;
    __atomic_store_n(&cwd_virtual, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&cwd_lock);
}

const char *shim_cwd_virtual(void)
{
    return __atomic_load_n(&cwd_virtual, __ATOMIC_ACQUIRE) ? cwd : NULL;
}

int shim_cwd_copy(char *buf, size_t size)
{
    int r = 0;
    pthread_mutex_lock(&cwd_lock);
    if (cwd_virtual) {
        size_t len = strlen(cwd);
        r = len < size ? 1 : -ERANGE;
        if (r == 1)
            memcpy(buf, cwd, len + 1);
    }
    pthread_mutex_unlock(&cwd_lock);
    return r;
}

/* Normalises a relative path against the working directory, into out; *virt is set when
 * that is a virtual one. getcwd is hooked: the kernel's answer comes from libc's. */
static int resolve_cwd(const char *path, char *out, size_t outsz, int *virt)
{
    pthread_mutex_lock(&cwd_lock);
    if (!cwd_ok && real_getcwd()(cwd, sizeof cwd))
        cwd_ok = 1;
    int r = cwd_ok ? path_normalize(cwd, path, out, outsz) : -errno;
    *virt = cwd_virtual;
    pthread_mutex_unlock(&cwd_lock);
    return r;
}

/* Normalises a path relative to directory descriptor dirfd, into out; *virt is set when
 * dirfd is a mount directory (its kernel file is "/", not the directory). */
static int resolve_at(int dirfd, const char *path, char *out, size_t outsz, int *virt)
{
    char base[PATH_MAX];
    struct shim_file *f = fdtable_get(dirfd);
    if (f && f->is_dir) {
        *virt = 1;
        int n = shim_mount_path(f->mount_idx, f->rel, base, sizeof base);
        if (n < 0)
            return n;
    } else {
        if (!may_lead_to_mount(dirfd, path))
            return 0; /* a directory no mount lies below: nothing of ours */
        char proc[32];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", dirfd);
        ssize_t n = real_readlink()(proc, base, sizeof base - 1);
        if (n < 0)
            return -errno;
        base[n] = '\0';
        if (base[0] != '/')
            return 0; /* not a directory of the file system: nothing of ours */
    }
    return path_normalize(base, path, out, outsz);
}

int shim_foreign_slow(const char *path)
{
    /* Every path hook asks this first: a /proc/self/fd/N (or /dev/fd/N) naming an in-memory
     * file becomes its memfd before libc or the kernel looks at the name. */
    if (__builtin_expect(__atomic_load_n(&shim_mem_live, __ATOMIC_RELAXED) != 0, 0) && path)
        shim_mem_settle_path(path);
    return path && path[0] == '/' && !screen_may_match(path);
}

int shim_resolve(int dirfd, const char *path, struct shim_path *p)
{
    p->local = path;
    if (!path || !*path || (path[0] == '/' && !screen_may_match(path)))
        return 0;
    pthread_once(&init_once, init);
    if (mounts.n == 0)
        return 0;
    const char *full = path;
    int virt = 0;
    if (path[0] != '/' || path_needs_normalize(path)) {
        int r;
        if (path[0] == '/')
            r = path_normalize("/", path, p->buf, sizeof p->buf);
        else if (dirfd == AT_FDCWD)
            r = resolve_cwd(path, p->buf, sizeof p->buf, &virt);
        else
            r = resolve_at(dirfd, path, p->buf, sizeof p->buf, &virt);
        if (r <= 0) /* local (0), or let libc give its own answer */
            return r == -ENAMETOOLONG ? r : 0;
        full = p->buf;
    }
    const struct mount *m = mounts_find(&mounts, full, &p->rel);
    if (!m) {
        if (virt)
            p->local = p->buf; /* the kernel cannot resolve it: give libc the whole path */
        return 0;
    }
    log_flush_held();
    shim_inode_commit_reaped(); /* children a signal handler reaped (process.c) */
    p->mount = m;
    p->idx = (int)(m - mounts.m);
    return m->err ? m->err : 1;
}

int shim_mount_stat(int idx, const char *rel, kv_stat *ks)
{
    const kv_ops *o;
    kv_mount *km;
    shim_enter();
    struct shim_inode *ino = *rel ? shim_inode_find(idx, rel) : NULL;
    if (ino) {
        /* open in this process: its bytes as they are now (a created file is not on the
         * server until its commit) */
        size_t len = 0;
        int r = shim_inode_size(ino, &len);
        pthread_mutex_lock(&ino->mu);
        *ks = (kv_stat){ .size = len, .mtime_ns = ino->mtime_ns,
                         .rev = ino->rev == KV_REV_ABSENT ? 0 : ino->rev };
        pthread_mutex_unlock(&ino->mu);
        shim_inode_put(ino);
        shim_leave();
        return r;
    }
    int r = shim_backend(idx, &o, &km);
    if (r == 0)
        r = o->stat(km, rel, ks);
    shim_leave();
    return r;
}

int shim_mount_path(int idx, const char *rel, char *out, size_t outsz)
{
    int n = snprintf(out, outsz, "%s%s%s", mounts.m[idx].path, *rel ? "/" : "", rel);
    return (n < 0 || (size_t)n >= outsz) ? -ENAMETOOLONG : n;
}

int shim_resolve_existing(int dirfd, const char *path, struct shim_path *p)
{
    p->local = path;
    if (shim_guard)
        return 0;
    int r = shim_resolve(dirfd, path, p);
    if (r != 1)
        return r;
    kv_stat ks;
    r = shim_mount_stat(p->idx, p->rel, &ks);
    return r < 0 ? r : 1;
}

static int load_backend(void)
{
    Dl_info self;
    char lib[PATH_MAX];
    if (!dladdr((void *)load_backend, &self) || !self.dli_fname) {
        log_at(LOG_ERROR, "cannot find the shim's own path to load %s", KV_LIB_NAME);
        return -EIO;
    }
    const char *slash = strrchr(self.dli_fname, '/');
    int dirlen = slash ? (int)(slash - self.dli_fname) : 1;
    snprintf(lib, sizeof lib, "%.*s/%s", dirlen, slash ? self.dli_fname : ".", KV_LIB_NAME);
    shim_fd_reserve_high();
    int saved = errno;
    errno = 0;
    void *h = dlopen(lib, RTLD_LAZY | RTLD_LOCAL);
    int err = errno;    /* dlopen leaves the failed open's errno */
    errno = saved;
    const kv_ops *(*entry)(void) = h ? (const kv_ops *(*)(void))dlsym(h, "kv_backend") : NULL;
    const kv_ops *o = entry ? entry() : NULL;
    if (!o || o->abi != KV_ABI) {
        char why[512]; /* dlerror's text is freed by the next dl call (the log's lookups) */
        const char *dl = h ? "wrong ABI" : dlerror();
        snprintf(why, sizeof why, "%s", dl ? dl : "?");
        log_at(LOG_ERROR, "cannot load the NATS backend %s: %s", lib, why);
        /* dlerror's text ends with strerror of the failed open: errno alone is not kept */
        for (int e = 0, all[] = { EMFILE, ENFILE, ENOMEM }; !h && e < 3; e++)
            if (err == all[e] || strstr(why, strerror(all[e])))
                return -all[e];
        return -EIO;
    }
    int r = o->init(KV_REVS_PER_THREAD);
    if (r < 0)
        return r == -EMFILE || r == -ENFILE || r == -ENOMEM ? r : -EIO; /* init said why */
    __atomic_store_n(&ops, o, __ATOMIC_RELEASE);
    return 0;
}

int shim_backend(int idx, const kv_ops **o, kv_mount **km)
{
    const kv_ops *loaded = __atomic_load_n(&ops, __ATOMIC_ACQUIRE);
    if (!loaded) {
        pthread_mutex_lock(&load_lock);
        int r = ops ? 0 : load_failed ? load_failed : load_backend();
        if (r == -EIO)
            load_failed = r;
        loaded = ops;
        pthread_mutex_unlock(&load_lock);
        if (!loaded)
            return r < 0 ? r : -EIO;
    }
    const struct mount *m = &mounts.m[idx];
    int r = 0;
    pthread_mutex_lock(&backend_lock);
    if (!kms[idx])
        r = loaded->mount(m->bucket, m->prefix, m->kv_flags, &kms[idx]);
    *km = kms[idx];
    pthread_mutex_unlock(&backend_lock);
    *o = loaded;
    return r < 0 ? r : 0;
}

int shim_backend_loaded(void)
{
    return __atomic_load_n(&ops, __ATOMIC_ACQUIRE) != NULL;
}

dev_t shim_dev(int idx)
{
    return makedev(0xa5a, (unsigned)idx + 1);
}

ino_t shim_ino(int idx, const char *rel)
{
    uint64_t h = fdtable_hash(rel, strlen(rel), FDTABLE_HASH_SEED + (uint64_t)idx);
    return (ino_t)(h ? h : 1);
}

void shim_owner(struct stat *st)
{
    pthread_once(&init_once, init);
    st->st_uid = uid_cache;
    st->st_gid = gid_cache;
}

void shim_fill_stat(struct stat *st, int idx, const char *rel, const kv_stat *ks)
{
    memset(st, 0, sizeof *st);
    st->st_dev = shim_dev(idx);
    st->st_ino = shim_ino(idx, rel);
    st->st_mode = ks->is_dir ? (S_IFDIR | 0755) : (S_IFREG | 0644);
    st->st_nlink = ks->is_dir ? 2 : 1;
    st->st_uid = uid_cache;
    st->st_gid = gid_cache;
    st->st_size = (off_t)ks->size;
    st->st_blksize = 4096;
    st->st_blocks = (blkcnt_t)((ks->size + 511) / 512);
    st->st_mtim.tv_sec = ks->mtime_ns / 1000000000;
    st->st_mtim.tv_nsec = ks->mtime_ns % 1000000000;
    st->st_atim = st->st_mtim;
    st->st_ctim = st->st_mtim;
}
