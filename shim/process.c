/* process.c: ownership across fork, exec and exit (SPEC "Processes").
 *
 * fork: waits until no thread is inside the shim (shim_fork_lock), so the child inherits no
 * held lock; the child's pid is refreshed by the atfork handler in state.c, so it never
 * commits its parent's files. vfork is served by fork: a vfork child runs hooks, which must
 * not share the parent's memory.
 *
 * exec: mount descriptors survive exec as kernel descriptors, but the table describing them
 * does not. Before exec the hooks write the table (mount path, key, revision, owner...) into
 * a "handoff" memfd left open for the new program, and name it in ASYA_STATE_HANDOFF; the new
 * program's constructor adopts the descriptors (found by the memfd's inode, so a dup2 done by
 * posix_spawn's file actions is followed) and commits those it owns. Owned close-on-exec
 * descriptors vanish at exec, so they are committed first. A new program that will not load
 * this library (LD_PRELOAD dropped from its environment, or statically linked) cannot adopt:
 * the files this process owns are committed before exec, with a warning for each inherited
 * one (what that program writes into it is lost). Nothing here allocates on the
 * exec path: the record and the new environment are built on the stack.
 *
 * exit: the destructor flushes stdio and commits every file this process owns that is still
 * open; _exit and _Exit commit too (without a flush, as they do not flush). */
#include "shim/shim.h"

#include <dlfcn.h>
#include <elf.h>
#include <signal.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "shim/inode.h"
#include "shim/mem.h"

#define HANDOFF_VAR "ASYA_STATE_HANDOFF"
#define CWD_VAR "ASYA_STATE_CWD" /* read by shim/cwd.c at start-up */
#define HANDOFF_MAGIC 0x4153594148464632ULL /* "ASYAHFF2" */

extern char **environ;

/* One handed-off descriptor; mount path and key follow it. */
struct handoff_rec {
    uint64_t magic;
    int32_t fd;
    int32_t oflags;
    int32_t owner;
    int32_t is_dir, force, excl, based, writers, created;
    uint64_t ino;           /* the memfd's inode: finds the descriptor after a dup2 */
    uint64_t rev, carried, base_len, base_hash;
    int64_t mtime_ns;
    uint32_t pathlen, rellen;
};

enum exec_kind { EXEC_PATH, EXEC_SEARCH, EXEC_FD };

/* Writes all of buf to fd. */
static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = real_write()(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The revision memory of f's key, to carry across exec (0: nothing remembered). */
static uint64_t memory_of(const struct shim_file *f)
{
    if (!f->ino || f->ino->carried || f->ino->rev || !shim_backend_loaded())
        return f->ino ? f->ino->carried : 0;
    const kv_ops *ops;
    kv_mount *km;
    uint64_t rev = 0;
    shim_enter();
    if (shim_backend(f->mount_idx, &ops, &km) == 0 &&
        ops->recall(km, shim_file_rel(f), &rev) < 0)
        rev = 0;
    shim_leave();
    return rev;
}

/* ---- will the new program adopt? ---------------------------------------------------- */

/* This library's file name when this process got it through LD_PRELOAD (set at load, from
 * the environment the program started with: env -i clears it before its exec); else "". */
static char self_lib[NAME_MAX + 1];

/* 1 when list (LD_PRELOAD's value: names split by ':' or spaces) names the library lib. */
static int names_lib(const char *list, const char *lib)
{
    size_t n = strlen(lib);
    for (const char *p = list; p && (p = strstr(p, lib)); p += n)
        if ((p == list || p[-1] == '/' || p[-1] == ':' || p[-1] == ' ') &&
            (p[n] == '\0' || p[n] == ':' || p[n] == ' '))
            return 1;
    return 0;
}

static const char *preload_of(char *const envp[])
{
    for (size_t i = 0; envp && envp[i]; i++)
        if (strncmp(envp[i], "LD_PRELOAD=", 11) == 0)
            return envp[i] + 11;
    return NULL;
}

/* Why the program at fd will not load this library (it has no program interpreter: statically
 * linked, as Go programs often are), or NULL (a dynamic program, a script, or unknown). */
static const char *static_program(int fd)
{
    Elf64_Ehdr eh;
    if (real_pread()(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh ||
        memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
        eh.e_phentsize != sizeof(Elf64_Phdr))
        return NULL; /* a script (its interpreter decides), or not ours to judge */
    for (unsigned i = 0; i < eh.e_phnum && i < 256; i++) {
        Elf64_Phdr ph;
        if (real_pread()(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + i * sizeof ph)) !=
            (ssize_t)sizeof ph)
            return NULL;
        if (ph.p_type == PT_INTERP)
            return NULL;
    }
    return "it is statically linked";
}

/* The program an exec of this kind would run, opened for reading (-1: not found or not
 * readable), searching PATH as execvp does for a bare name. */
static int open_program(enum exec_kind kind, int fd, const char *file)
{
    if (kind == EXEC_FD)
        return real_fcntl()(fd, F_DUPFD_CLOEXEC, 0);
    if (!file || !*file)
        return -1;
    if (kind == EXEC_PATH || strchr(file, '/'))
        return real_open()(file, O_RDONLY | O_CLOEXEC);
    const char *path = getenv("PATH");
    for (const char *d = path && *path ? path : "/bin:/usr/bin"; ; d++) {
        size_t n = strcspn(d, ":");
        char full[PATH_MAX];
        if (n + 1 + strlen(file) < sizeof full) {
            snprintf(full, sizeof full, "%.*s%s%s", (int)n, n ? d : ".", "/", file);
            int pfd = real_access()(full, X_OK) == 0 ? real_open()(full, O_RDONLY | O_CLOEXEC)
                                                     : -1;
            if (pfd >= 0)
                return pfd;
        }
        d += n;
        if (!*d)
            return -1;
    }
}

/* Why the program exec is about to run will not adopt the mount descriptors it inherits
 * (written into why), or NULL when it will as far as can be told: it must load this library
 * (LD_PRELOAD in envp naming it, when that is how this process got it) and be dynamically
 * linked. */
static const char *exec_refusal(enum exec_kind kind, int fd, const char *file,
                                char *const envp[], char *why, size_t n)
{
    /* loaded otherwise than by LD_PRELOAD (/etc/ld.so.preload): the new program is too */
    if (self_lib[0] && !names_lib(preload_of(envp), self_lib)) {
        snprintf(why, n, "its environment's LD_PRELOAD does not name %s", self_lib);
        return why;
    }
    int pfd = open_program(kind, fd, file);
    const char *st = pfd >= 0 ? static_program(pfd) : NULL;
    if (pfd >= 0)
        real_close()(pfd);
    if (st)
        snprintf(why, n, "%s", st);
    return st ? why : NULL;
}

/* ---- the handoff ---------------------------------------------------------------------- */

/* Before exec (in_parent 0) or posix_spawn (in_parent 1): writes the table's entries for
 * descriptors the new program inherits into a handoff memfd. Close-on-exec descriptors
 * vanish at exec, so their files are committed first (they stay in the table: should exec
 * fail, a later close commits again only if they changed); posix_spawn's parent keeps them.
 * refusal (exec only): why the new program will not adopt what it inherits, or NULL; then
 * the files this process owns are committed now, and each inherited file gets one warning:
 * what the new program writes into it is lost (SPEC: static programs are not supported,
 * never silently). Returns the memfd (>= 0), -1 when there is nothing to hand off, or
 * -errno. */
/* 1 when a descriptor below fd is of the same open file as f (its inode, or f itself). */
static int seen_before(int fd, const struct shim_file *f)
{
    for (int d = fdtable_next(0); d >= 0 && d < fd; d = fdtable_next(d + 1)) {
        const struct shim_file *g = fdtable_get(d);
        if (g && (g == f || (f->ino && g->ino == f->ino)))
            return 1;
    }
    return 0;
}

static int handoff_prepare(int in_parent, const char *prog, const char *refusal)
{
    int hfd = -1;
    shim_mem_settle_all(); /* the new program inherits kernel files */
    for (int fd = fdtable_next(0); fd >= 0; fd = fdtable_next(fd + 1)) {
        struct shim_file *f = fdtable_get(fd);
        int fdflags = f ? real_fcntl()(fd, F_GETFD, NULL) : -1;
        if (!f || fdflags < 0)
            continue;
        if (fdflags & FD_CLOEXEC) {
            int r = in_parent ? 0 : shim_commit(fd, f);
            if (r < 0)
                log_at(LOG_WARN, "commit of %s before exec failed: %s", shim_file_rel(f),
                       strerror(-r));
            continue;
        }
        struct stat st;
        if (real_fstat()(fd, &st) < 0)
            continue;
        if (refusal && f->owner == shim_pid() && !f->is_dir && !seen_before(fd, f)) {
            /* (another's owner commits it as usual; one line per file, not per descriptor) */
            int r = shim_commit(fd, f);
            log_at(LOG_WARN, "%s: %s will not adopt it (%s): %s before exec; what it writes "
                   "there is lost", shim_file_rel(f), prog ? prog : "the new program", refusal,
                   r < 0 ? "its commit failed" : "committed");
        }
        if (hfd < 0) {
            /* born close-on-exec, so another thread's fork+exec never inherits it low */
            hfd = memfd_create("asya-state-handoff", MFD_CLOEXEC);
            if (hfd < 0)
                return -errno;
            hfd = shim_fd_high(hfd);
            real_fcntl()(hfd, F_SETFD, NULL); /* inherited by our exec only */
        }
        const struct mount *m = shim_mount(f->mount_idx);
        const char *rel = shim_file_rel(f);
        struct handoff_rec rec = {
            .magic = HANDOFF_MAGIC, .fd = fd, .oflags = f->oflags, .owner = f->owner,
            .is_dir = f->is_dir, .ino = st.st_ino, .carried = memory_of(f),
            .pathlen = (uint32_t)m->pathlen, .rellen = (uint32_t)strlen(rel),
        };
        struct shim_inode *ino = f->ino;
        if (ino) {
            pthread_mutex_lock(&ino->mu);
            rec.owner = ino->owner;
            rec.force = ino->force;
            rec.excl = ino->excl;
            rec.rev = ino->rev;
            rec.base_len = ino->base_len;
            rec.base_hash = ino->base_hash;
            rec.mtime_ns = ino->mtime_ns;
            rec.based = ino->based;
            rec.writers = ino->writers;
            rec.created = ino->created;
            pthread_mutex_unlock(&ino->mu);
        }
        if (write_all(hfd, &rec, sizeof rec) < 0 || write_all(hfd, m->path, rec.pathlen) < 0 ||
            write_all(hfd, rel, rec.rellen) < 0) {
            real_close()(hfd);
            return -EIO;
        }
    }
    return hfd;
}

/* Fills out (room for n + 3 pointers) with envp less any old handoff or working-directory
 * entry, plus the new ones (already formatted "NAME=value") that are non-NULL. */
static void env_with(char *const envp[], char **out, const char *handoff, const char *cwd)
{
    static const char *const ours[] = { HANDOFF_VAR "=", CWD_VAR "=" };
    size_t k = 0;
    for (size_t i = 0; envp && envp[i]; i++) {
        int skip = 0;
        for (size_t j = 0; j < 2; j++)
            skip |= strncmp(envp[i], ours[j], strlen(ours[j])) == 0;
        if (!skip)
            out[k++] = envp[i];
    }
    if (handoff)
        out[k++] = (char *)handoff;
    if (cwd)
        out[k++] = (char *)cwd;
    out[k] = NULL;
}

static size_t env_count(char *const envp[])
{
    size_t n = 0;
    while (envp && envp[n])
        n++;
    return n;
}

/* The one body of the exec family: prepares the handoff, runs exec (fn) with the new
 * environment, and cleans up when exec failed. */

static int exec_body(enum exec_kind kind, int fd, const char *file, char *const argv[],
                     char *const envp[])
{
    char why[NAME_MAX + 80];
    const char *refusal = shim_guard || fdtable_next(0) < 0
                        ? NULL : exec_refusal(kind, fd, file, envp, why, sizeof why);
    int hfd = shim_guard ? -1 : handoff_prepare(0, kind == EXEC_FD ? NULL : file, refusal);
    if (hfd < -1)
        log_at(LOG_WARN, "cannot hand mount files to the new program: %s", strerror(-hfd));
    char var[sizeof HANDOFF_VAR + 16], cwd[sizeof CWD_VAR + PATH_MAX];
    snprintf(var, sizeof var, HANDOFF_VAR "=%d", hfd);
    const char *vcwd = shim_guard ? NULL : shim_cwd_virtual();
    if (vcwd)
        snprintf(cwd, sizeof cwd, CWD_VAR "=%s", vcwd);
    char *env[env_count(envp) + 3];
    env_with(envp, env, hfd >= 0 ? var : NULL, vcwd ? cwd : NULL);
    int r = kind == EXEC_FD     ? real_fexecve()(fd, argv, env)
          : kind == EXEC_SEARCH ? real_execvpe()(file, argv, env)
                                : real_execve()(file, argv, env);
    int saved = errno;
    if (hfd >= 0)
        real_close()(hfd);
    errno = saved;
    return r;
}

SHIM_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
    return exec_body(EXEC_PATH, -1, path, argv, envp);
}

SHIM_EXPORT int execv(const char *path, char *const argv[])
{
    return exec_body(EXEC_PATH, -1, path, argv, environ);
}

SHIM_EXPORT int execvp(const char *file, char *const argv[])
{
    return exec_body(EXEC_SEARCH, -1, file, argv, environ);
}

SHIM_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
    return exec_body(EXEC_SEARCH, -1, file, argv, envp);
}

SHIM_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
    return exec_body(EXEC_FD, fd, NULL, argv, envp);
}

/* execl, execlp, execle: the arguments gathered on the stack, then exec_body. */
static size_t count_args(const char *arg, va_list ap)
{
    size_t n = 1;
    va_list c;
    va_copy(c, ap);
    while (arg && va_arg(c, const char *))
        n++;
    va_end(c);
    return n;
}

/* Fills argv[0..n] (n from count_args) and consumes the terminating NULL. */
static void gather_args(const char *arg, va_list *ap, char **argv, size_t n)
{
    argv[0] = (char *)arg;
    for (size_t i = 1; i < n; i++)
        argv[i] = va_arg(*ap, char *);
    argv[n] = NULL;
    if (arg)
        (void)va_arg(*ap, char *);
}

SHIM_EXPORT int execl(const char *path, const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    size_t n = count_args(arg, ap);
    char *argv[n + 1];
    gather_args(arg, &ap, argv, n);
    va_end(ap);
    return exec_body(EXEC_PATH, -1, path, argv, environ);
}

SHIM_EXPORT int execlp(const char *file, const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    size_t n = count_args(arg, ap);
    char *argv[n + 1];
    gather_args(arg, &ap, argv, n);
    va_end(ap);
    return exec_body(EXEC_SEARCH, -1, file, argv, environ);
}

SHIM_EXPORT int execle(const char *path, const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    size_t n = count_args(arg, ap);
    char *argv[n + 1];
    gather_args(arg, &ap, argv, n);
    char *const *envp = va_arg(ap, char *const *);
    va_end(ap);
    return exec_body(EXEC_PATH, -1, path, argv, envp);
}

/* ---- children: who may still hold a file after its owner's last close ---- */

#define KIDS_MAX 256
static struct kid {
    pid_t pid;               /* 0: a free slot */
    unsigned n;              /* its number: the count of children before it, plus one */
} kids[KIDS_MAX];            /* the latest children forked or spawned */
static unsigned kids_made;   /* children forked or spawned so far */
static pthread_mutex_t kids_mu = PTHREAD_MUTEX_INITIALIZER; /* a leaf lock; guards kids */

unsigned shim_forks(void)
{
    return __atomic_load_n(&kids_made, __ATOMIC_ACQUIRE);
}

static void kid_add(pid_t pid)
{
    pthread_mutex_lock(&kids_mu);
    unsigned n = __atomic_add_fetch(&kids_made, 1, __ATOMIC_ACQ_REL);
    kids[n % KIDS_MAX] = (struct kid){ pid, n };
    pthread_mutex_unlock(&kids_mu);
}

/* 1 when process pid has a descriptor of the kernel file (dev, ino) open (or may have: its
 * descriptors cannot be read), 0 when not, -1 when pid is gone. Allocates nothing. */
static int kid_holds(pid_t pid, dev_t dev, ino_t ino)
{
    char dir[32];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    int dfd = real_openat()(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) /* gone; or not to be read (a set-user-ID child, no descriptor left): it
                    may hold the file, so it is taken to until a wait reaps it */
        return errno == ENOENT || errno == ESRCH ? -1 : 1;
    char buf[4096];
    long got;
    int found = 0;
    while (!found && (got = syscall(SYS_getdents64, dfd, buf, sizeof buf)) > 0) {
        for (long off = 0; off < got && !found;) {
            struct dirent64 *d = (struct dirent64 *)(buf + off);
            struct stat st;
            found = d->d_name[0] >= '0' && d->d_name[0] <= '9' &&
                    syscall(SYS_newfstatat, dfd, d->d_name, &st, 0) == 0 && st.st_dev == dev &&
                    st.st_ino == ino;
            off += d->d_reclen;
        }
    }
    real_close()(dfd);
    return found;
}

pid_t shim_child_holding(int fd, unsigned since, unsigned until)
{
    struct stat st;
    if (until == since || real_fstat()(fd, &st) < 0)
        return 0; /* (no child since: the common case costs a load) */
    for (int i = 0; i < KIDS_MAX; i++) {
        pthread_mutex_lock(&kids_mu);
        struct kid k = kids[i];
        pthread_mutex_unlock(&kids_mu);
        if (!k.pid || k.n <= since || k.n > until)
            continue; /* forked before the file was opened, or after its last close here */
        int h = kid_holds(k.pid, st.st_dev, st.st_ino);
        if (h > 0)
            return k.pid;
        pthread_mutex_lock(&kids_mu);
        if (h < 0 && kids[i].pid == k.pid && kids[i].n == k.n)
            kids[i].pid = 0; /* gone: not asked again */
        pthread_mutex_unlock(&kids_mu);
    }
    return 0;
}

/* posix_spawn runs glibc's internal execve, so the handoff is prepared here, in the parent. */
static int spawn_body(int search, pid_t *pid, const char *path,
                      const posix_spawn_file_actions_t *fa, const posix_spawnattr_t *attr,
                      char *const argv[], char *const envp[])
{
    int hfd = shim_guard ? -1 : handoff_prepare(1, NULL, NULL);
    char var[sizeof HANDOFF_VAR + 16], cwd[sizeof CWD_VAR + PATH_MAX];
    snprintf(var, sizeof var, HANDOFF_VAR "=%d", hfd);
    const char *vcwd = shim_guard ? NULL : shim_cwd_virtual();
    if (vcwd)
        snprintf(cwd, sizeof cwd, CWD_VAR "=%s", vcwd);
    char *env[env_count(envp) + 3];
    env_with(envp, env, hfd >= 0 ? var : NULL, vcwd ? cwd : NULL);
    pid_t child = 0;
    int r = search ? real_posix_spawnp()(&child, path, fa, attr, argv, env)
                   : real_posix_spawn()(&child, path, fa, attr, argv, env);
    if (r == 0 && child > 0)
        kid_add(child);
    if (r == 0 && pid)
        *pid = child;
    if (hfd >= 0)
        real_close()(hfd);
    return r;
}

SHIM_EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                            const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    return spawn_body(0, pid, path, fa, attr, argv, envp);
}

SHIM_EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
                             const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    return spawn_body(1, pid, file, fa, attr, argv, envp);
}

/* After a wait that reaped a child: the files it held are committed again if it changed
 * them (inode.c). Not inside a SIGCHLD handler (bash reaps there; SIGCHLD is blocked while
 * it runs): a commit allocates and takes locks the interrupted code may hold. There it is
 * left to the next mount path this process names, or to its exit. sigprocmask is
 * async-signal-safe. */
static void reaped(pid_t r)
{
    sigset_t now;
    if (r <= 0 || shim_guard || !__atomic_load_n(&kids_made, __ATOMIC_ACQUIRE))
        return;
    if (sigprocmask(SIG_BLOCK, NULL, &now) == 0 && !sigismember(&now, SIGCHLD))
        (void)shim_inode_commit_held(0);
    else
        shim_inode_reaped_later();
}

SHIM_EXPORT pid_t wait(int *status)
{
    pid_t r = real_wait()(status);
    int saved = errno;
    reaped(r);
    errno = saved;
    return r;
}

SHIM_EXPORT pid_t waitpid(pid_t pid, int *status, int options)
{
    pid_t r = real_waitpid()(pid, status, options);
    int saved = errno;
    reaped(r);
    errno = saved;
    return r;
}

SHIM_EXPORT pid_t wait4(pid_t pid, int *status, int options, struct rusage *ru)
{
    pid_t r = real_wait4()(pid, status, options, ru);
    int saved = errno;
    reaped(r);
    errno = saved;
    return r;
}

SHIM_EXPORT int waitid(idtype_t idtype, id_t id, siginfo_t *info, int options)
{
    int r = real_waitid()(idtype, id, info, options);
    int saved = errno;
    reaped(r == 0 && info && info->si_pid > 0 && !(options & WNOWAIT) ? info->si_pid : 0);
    errno = saved;
    return r;
}

SHIM_EXPORT pid_t fork(void)
{
    if (shim_guard)
        return real_fork()();
    (void)shim_env(SHIM_ENV_CWD); /* the environment scan is done: never half-done in a child */
    shim_fork_lock();
    pid_t pid = real_fork()();
    if (pid == 0) { /* a child's own children only (kids_mu: no other thread here) */
        memset(kids, 0, sizeof kids);
        pthread_mutex_init(&kids_mu, NULL);
    } else if (pid > 0) {
        kid_add(pid); /* before another thread's close can miss it (the fork lock) */
    }
    shim_fork_unlock(pid == 0);
    return pid;
}

SHIM_EXPORT pid_t vfork(void)
{
    return fork();
}

/* Commits every file this process owns that is still open (each file once). */
static void commit_owned(void)
{
    pid_t me = shim_pid();
    for (int fd = fdtable_next(0); fd >= 0; fd = fdtable_next(fd + 1)) {
        struct shim_file *f = fdtable_get(fd);
        /* its own files, and those inherited from a process that has exited (a daemon's
         * parent): nobody else is left to commit them */
        if (!f || (f->owner != me && !(f->ino && shim_pid_exited(f->ino->owner))))
            continue;
        log_at(LOG_DEBUG, "commit of %s at exit", shim_file_rel(f));
        int r = shim_drop(fd);
        if (r < 0)
            log_at(LOG_ERROR, "a state file's commit at exit failed: %s", strerror(-r));
    }
    (void)shim_inode_commit_held(1); /* closed here, written on by a child (inode.c) */
    int r = __atomic_load_n(&shim_inode_maps_live, __ATOMIC_ACQUIRE) ? shim_inode_commit_mapped()
                                                                    : 0;
    if (r < 0)
        log_at(LOG_ERROR, "a mapped state file's commit at exit failed: %s", strerror(-r));
}

SHIM_EXPORT void _exit(int status)
{
    if (!shim_guard)
        commit_owned();
    real__exit()(status);
    __builtin_unreachable();
}

SHIM_EXPORT void _Exit(int status)
{
    if (!shim_guard)
        commit_owned();
    real__Exit()(status);
    __builtin_unreachable();
}

__attribute__((destructor)) static void at_exit(void)
{
    if (shim_guard)
        return;
    if (fdtable_next(0) < 0 && !__atomic_load_n(&shim_inode_maps_live, __ATOMIC_ACQUIRE)) {
        (void)shim_inode_commit_held(1); /* (nothing when none is held) */
        return;
    }
    fflush(NULL); /* a stream left open at exit is flushed into its buffer first */
    commit_owned();
}

/* This process's open descriptors, read from /proc/self/fd without allocating. */
static int open_fds(int *fds, int max)
{
    int dfd = real_openat()(AT_FDCWD, "/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return 0;
    char buf[8192];
    int n = 0;
    long got;
    while (n < max && (got = syscall(SYS_getdents64, dfd, buf, sizeof buf)) > 0) {
        for (long off = 0; off < got && n < max;) {
            struct dirent64 *d = (struct dirent64 *)(buf + off);
            if (d->d_name[0] >= '0' && d->d_name[0] <= '9' && atoi(d->d_name) != dfd)
                fds[n++] = atoi(d->d_name);
            off += d->d_reclen;
        }
    }
    real_close()(dfd);
    return n;
}

/* Adopts one record: every descriptor that is its memfd (or, for a directory, its number). */
static void adopt_one(const struct handoff_rec *rec, const char *path, const char *rel,
                      const int *fds, const ino_t *inos, unsigned char *claimed, int nfds)
{
    char full[2 * PATH_MAX + 2];
    snprintf(full, sizeof full, "%s%s%s", path, rec->rellen ? "/" : "", rel);
    struct shim_path p;
    if (shim_resolve(AT_FDCWD, full, &p) != 1 || strcmp(p.mount->path, path) != 0) {
        log_at(LOG_WARN, "inherited %s is not under a mount here: left as a plain file", full);
        return;
    }
    struct shim_file *f = calloc(1, sizeof *f);
    char *r = f && rec->is_dir ? strdup(rel) : NULL;
    struct shim_inode *ino = NULL;
    if (f && !rec->is_dir) {
        struct shim_inode_init in = {
            .mount_idx = p.idx, .rel = p.rel, .owner = rec->owner, .rev = rec->rev,
            .mtime_ns = rec->mtime_ns, .base_len = rec->base_len, .base_hash = rec->base_hash,
            .based = rec->based, .writers = rec->writers, .force = rec->force,
            .excl = rec->excl, .created = rec->created, .carried = rec->carried,
        };
        ino = shim_inode_adopt(&in);
    }
    if (!f || (rec->is_dir ? !r : !ino)) {
        if (ino) {
            shim_inode_close(ino, -1, NULL);
            shim_inode_put(ino);
        }
        free(r);
        free(f);
        return;
    }
    *f = (struct shim_file){
        .mount_idx = p.idx, .rel = r, .oflags = rec->oflags, .owner = rec->owner,
        .is_dir = rec->is_dir, .ino = ino,
    };
    if (!rec->is_dir && rec->owner == shim_pid()) {
        /* this program commits it: its configuration is read now, from the environment it
         * started with (a program may clear it before it execs another, as env -i does) */
        const kv_ops *o;
        kv_mount *km;
        (void)shim_backend(p.idx, &o, &km);
    }
    f->refs = 1; /* held while adopting, so the record outlives a failed set */
    for (int i = 0; i < nfds; i++)
        if (fds[i] == rec->fd ? rec->is_dir || inos[i] == rec->ino
                              : !rec->is_dir && !claimed[i] && inos[i] == rec->ino) {
            claimed[i] = 1;
            if (!f->kid && !rec->is_dir)
                f->kid = shim_fd_kid(fds[i]);
            fdtable_set(fds[i], f);
        }
    fdtable_unref(f);
}

/* The handoff's record at *off (and its mount path and rel): 1, or 0 at its end. */
static int next_rec(int hfd, size_t size, size_t *off, struct handoff_rec *rec,
                    char path[PATH_MAX + 1], char rel[PATH_MAX + 1])
{
    if (*off + sizeof *rec > size ||
        real_pread()(hfd, rec, sizeof *rec, (off_t)*off) != (ssize_t)sizeof *rec ||
        rec->magic != HANDOFF_MAGIC || rec->pathlen >= PATH_MAX || rec->rellen >= PATH_MAX)
        return 0;
    size_t at = *off + sizeof *rec;
    if (real_pread()(hfd, path, rec->pathlen, (off_t)at) != (ssize_t)rec->pathlen ||
        real_pread()(hfd, rel, rec->rellen, (off_t)(at + rec->pathlen)) != (ssize_t)rec->rellen)
        return 0;
    *off = at + rec->pathlen + rec->rellen;
    path[rec->pathlen] = '\0';
    rel[rec->rellen] = '\0';
    return 1;
}

/* Reads the handoff memfd into the table. A record names its descriptor; descriptors of the
 * same kernel file that no record names (moved by dup2 between the handoff and the exec:
 * posix_spawn's file actions) go to the first record of that file. */
static void adopt(int hfd)
{
    int fds[1024];
    ino_t inos[1024];
    unsigned char claimed[1024] = { 0 }; /* 1: named by a record, or given to one */
    int nfds = open_fds(fds, 1024);
    for (int i = 0; i < nfds; i++) {
        struct stat st;
        inos[i] = (fds[i] != hfd && real_fstat()(fds[i], &st) == 0) ? st.st_ino : 0;
    }
    struct stat hst;
    if (real_fstat()(hfd, &hst) < 0)
        return;
    size_t size = (size_t)hst.st_size, off = 0;
    struct handoff_rec rec;
    char path[PATH_MAX + 1], rel[PATH_MAX + 1];
    while (next_rec(hfd, size, &off, &rec, path, rel))
        for (int i = 0; i < nfds; i++) /* (its own descriptor, if still that file) */
            claimed[i] |= fds[i] == rec.fd && (rec.is_dir || inos[i] == rec.ino);
    off = 0;
    while (next_rec(hfd, size, &off, &rec, path, rel))
        adopt_one(&rec, path, rel, fds, inos, claimed, nfds);
}

__attribute__((constructor)) static void adopt_inherited(void)
{
    Dl_info self;
    if (dladdr((void *)adopt_inherited, &self) && self.dli_fname) {
        const char *lib = strrchr(self.dli_fname, '/');
        lib = lib ? lib + 1 : self.dli_fname;
        if (strlen(lib) < sizeof self_lib && names_lib(preload_of(environ), lib))
            memcpy(self_lib, lib, strlen(lib) + 1);
    }
    const char *v = shim_env(SHIM_ENV_HANDOFF);
    if (!v)
        return;
    int hfd = atoi(v);
    unsetenv(HANDOFF_VAR);
    shim_enter();
    adopt(hfd);
    shim_leave();
    real_close()(hfd);
}
