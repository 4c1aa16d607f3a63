/* shim.h: what the hook files share: the guard, path resolution, the kv backend, and the
 * helpers at the hook edge. Only the hook edge touches errno (shim_fail); everything below it
 * returns 0 or a negative errno. */
#ifndef SHIM_SHIM_H
#define SHIM_SHIM_H

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <sys/stat.h>

#include "kv/kv.h"
#include "shim/fdtable.h"
#include "shim/mounts.h"
#include "shim/real.h"

/* Non-zero while this thread runs the shim's own work (calls into the backend, logging):
 * every hook then goes straight to libc, so libnats' own files and sockets are never ours. */
extern __thread int shim_guard __attribute__((tls_model("initial-exec")));

/* A path resolved to a mount. */
struct shim_path {
    int idx;                /* index in the mount table */
    const struct mount *mount;
    const char *rel;        /* below the mount ("" for its root); points into buf */
    const char *local;      /* for a local path (shim_resolve gave 0): the path libc must be
                               given: the caller's, or, when it was relative to a virtual
                               working directory or a mount directory fd, the absolute
                               path in buf (the dirfd is then ignored by the *at() calls) */
    char buf[PATH_MAX];
};

/* Resolves (dirfd, path) lexically, against the working directory or dirfd when relative.
 * 1: a mount path (p filled); 0: a local path, for libc; or a negative errno
 * (-ENAMETOOLONG, or the mount's configuration error). */
int shim_resolve(int dirfd, const char *path, struct shim_path *p);

/* The shim's environment variables, read once in one pass over environ (NULL when unset). */
enum shim_env {
    SHIM_ENV_PROXY_MOUNTS, /* ASYA_STATE_PROXY_MOUNTS */
    SHIM_ENV_STATE_MOUNT,  /* STATE_MOUNT */
    SHIM_ENV_HANDOFF,      /* ASYA_STATE_HANDOFF: mount descriptors inherited across exec */
    SHIM_ENV_CWD,          /* ASYA_STATE_CWD: a virtual working directory inherited */
    SHIM_ENV_BUFFER,       /* ASYA_STATE_BUFFER: "memfd" turns in-memory files off */
    SHIM_ENV_COUNT
};
const char *shim_env(enum shim_env var);

/* 1 when path is surely local without resolving it: an absolute path whose first component
 * is on no mount (the hot path of every hook: no lock, no allocation, no big frame). The
 * common case is inline (shim_foreign_quick: 1 when it proves the path local, 0 when it
 * cannot): no in-memory file open, and no mount's first byte (nor '/' or '.') where the
 * path's second is. Everything else asks shim_foreign_slow. */
extern uint64_t shim_screen_bits[4];
extern int shim_mem_live;
int shim_foreign_slow(const char *path);

static inline int shim_foreign_quick(const char *path)
{
    if (!path || path[0] != '/' || __atomic_load_n(&shim_mem_live, __ATOMIC_RELAXED) != 0)
        return 0;
    unsigned char c = (unsigned char)path[1];
    return !(__atomic_load_n(&shim_screen_bits[c >> 6], __ATOMIC_RELAXED) >> (c & 63) & 1);
}

static inline int shim_foreign(const char *path)
{
    return __builtin_expect(shim_foreign_quick(path), 1) || shim_foreign_slow(path);
}

/* Stats (idx, rel) through the backend (guard and loading handled). 0 or -errno. */
int shim_mount_stat(int idx, const char *rel, kv_stat *ks);

/* The absolute path of (idx, rel) into out: its length, or -ENAMETOOLONG. */
int shim_mount_path(int idx, const char *rel, char *out, size_t outsz);

/* shim_resolve for calls that need the name to exist: 1 for a mount path that exists (p
 * filled), 0 for a local path (p->local is what libc gets), or a negative errno (-ENOENT for
 * a mount path that does not exist). Asks the backend (a stat) for a mount path. */
int shim_resolve_existing(int dirfd, const char *path, struct shim_path *p);

/* The mount table's mount idx (valid for the process's life). */
const struct mount *shim_mount(int idx);

/* The working directory changed (chdir, fchdir): forget the cached copy (and the virtual
 * working directory, if any). */
void shim_cwd_changed(void);

/* The virtual working directory (kept beside the cached one; hooks in shim/cwd.c): dir, an
 * absolute normalised mount directory path, becomes the working directory relative paths
 * resolve against; the kernel's is left as it was. */
void shim_cwd_set_virtual(const char *dir);

/* The virtual working directory, or NULL when the working directory is the kernel's. The
 * string stays valid until the next chdir; no allocation, no lock (safe after vfork). */
const char *shim_cwd_virtual(void);

/* Copies the virtual working directory into buf: 1 done, 0 when the working directory is
 * the kernel's (buf untouched), -ERANGE when size is too small. */
int shim_cwd_copy(char *buf, size_t size);

/* The backend and its handle for mount idx, loading and binding on first use. 0 or -errno
 * (-EIO when the backend cannot be loaded, with one log line). Call with the guard held. */
int shim_backend(int idx, const kv_ops **ops, kv_mount **km);

/* 1 once the backend is loaded (before that no descriptor can be the shim's own). */
int shim_backend_loaded(void);

/* The identity stat reports for a mount path: one st_dev per mount, st_ino from the key. */
dev_t shim_dev(int idx);
ino_t shim_ino(int idx, const char *rel);

/* statx's body (path may be NULL with AT_EMPTY_PATH: syscall() passes it through). */
int shim_statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *stx);

/* The owner stat reports for every mount path: st_uid and st_gid of the process. */
void shim_owner(struct stat *st);

/* Fills st for a mount path from what the backend reported. */
void shim_fill_stat(struct stat *st, int idx, const char *rel, const kv_stat *ks);

/* Opens (dirfd, path) as openat() would: through the shim for a mount path, through libc
 * otherwise (mode is used with O_CREAT). how: 0, or SHIM_OPEN_KERNEL for a memfd buffer from
 * the start (never an in-memory file). The descriptor or -errno; errno is left alone. For
 * callers that open by other means than the open hooks (stdio, mkstemp). */
#define SHIM_OPEN_KERNEL 1
int shim_open(int dirfd, const char *path, int oflags, mode_t mode, int how);

/* A memfd holding data, as a descriptor with the flags of oflags (sealed when read-only).
 * The descriptor or -errno. */
int shim_buffer_open(const void *data, size_t len, int oflags);

/* Commits the open file of record f (descriptor fd) now, by the contract's rules, when it
 * is owned by this process and changed (or forced): fsync, exec. 0 or -errno. */
int shim_commit(int fd, struct shim_file *f);

/* Unlinks value rel of mount idx (guard held): the server's key, and this process's open
 * file of that name, which is discarded at its last close. 0 or -errno. */
int shim_remove_value(const kv_ops *ops, kv_mount *km, int idx, const char *rel);

/* Grows the descriptor table up to where shim_fd_high puts descriptors, while the process
 * may still be single-threaded (called before the backend is loaded). */
void shim_fd_reserve_high(void);

/* Forgets mount descriptor fd the way close() does, without closing the kernel descriptor:
 * commits first when it was the owner's last descriptor of the file. 0 or -errno (0 also for
 * a descriptor that is not a mount file). For callers that close by other means (fclose,
 * dup2 onto it, close_range). */
int shim_drop(int fd);

/* The identity of the kernel file under fd (device and inode number mixed; 0 when fd is not
 * open), kept in a record (shim_file.kid) whenever its descriptors get a new kernel file. */
uint64_t shim_fd_kid(int fd);
void shim_log_lost(struct shim_file *f, int fd, int last, int r);

/* fcntl's lock commands (shim/lock.c): 1 when cmd takes, tests or releases a lock on a
 * mount descriptor of the program's, answered in *res (0, or -1 with errno: ENOLCK for a
 * lock or a test, an unlock succeeds); 0 for everything else, which is not touched. */
int shim_lock_fcntl(int fd, int cmd, void *arg, int *res);

/* Moves fd to a close-on-exec descriptor high above the program's range; returns it (or fd
 * itself, close-on-exec, when there is no room). */
int shim_fd_high(int fd);

/* This process's pid, cached (updated in a forked child). */
pid_t shim_pid(void);
/* A child this process forked or spawned while shim_forks() went from since to until that
 * has the kernel file of fd open (its pid), or 0 (process.c). */
pid_t shim_child_holding(int fd, unsigned since, unsigned until);
unsigned shim_forks(void); /* children forked or spawned so far */

/* Marks a hook: the only symbols the preloaded library exports (see hooks.def). */
#define SHIM_EXPORT __attribute__((visibility("default")))

static inline int shim_fail(int err)
{
    errno = -err;
    return -1;
}

/* Around the shim's own work: sets the guard, and holds the fork lock (shared) at the
 * outermost level, so a fork waits until no thread is inside the shim (SPEC "Processes"). */
void shim_enter(void);
void shim_leave(void);

/* fork's side of that lock (shim/process.c): also holds, in this order, the fd table's, the
 * working directory's and the listings' mutexes across fork, so the child never inherits
 * one held by a thread it does not have. */
void shim_fork_lock(void);
void shim_fork_unlock(int child);
void shim_dirs_fork_lock(void);
void shim_dirs_fork_unlock(int child);

#endif
