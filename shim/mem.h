/* mem.h: mount files served from memory (shim/mem.c).
 *
 * A memfd costs four system calls a direct client does not make (create, fill, seal, close)
 * and, in a real open/read/close cycle, 20-28 us (1 KiB) to 53 us (64 KiB) on the
 * development VM. So a file opened with
 * open() is first held in memory: the program gets a real descriptor number, an O_PATH
 * descriptor of an empty sealed memfd (the placeholder), and every call that reads, writes,
 * seeks or stats it is served by the hooks from the buffer. Any other call on it (mmap, dup,
 * fdopen, ioctl, sendfile, a fork, exec or spawn, a reopen through /proc/self/fd)
 * first settles it: the buffer moves into a memfd that replaces the placeholder under the
 * same number, and from then on the descriptor is an ordinary kernel file. A call the shim
 * does not hook (a raw system call) meets the placeholder and fails with EBADF: never a
 * silent wrong answer, but for one case: a reopen through a symbolic link of the program's
 * own to /proc/self/fd/N reads the empty placeholder (README, Limits). Descriptors 0-2 and
 * stdio streams are memfds from the start. ASYA_STATE_BUFFER=memfd makes every open a memfd
 * at once. */
#ifndef SHIM_MEM_H
#define SHIM_MEM_H

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>

#include "kv/kv.h"

struct shim_mem {
    pthread_mutex_t mu;     /* guards everything below */
    int settled;            /* 1: the descriptor is a kernel file now (or closed); data gone */
    int flags;              /* the file status flags (O_ACCMODE, O_APPEND, O_NONBLOCK...) */
    char *data;             /* the bytes: owned (malloc) when writable, else val's */
    size_t len, cap;
    size_t max;             /* the largest value a commit can carry (kv_ops.limit), 0 unknown:
                             * a write or truncate past it is EFBIG there, not at the close */
    off_t pos;
    kv_value val;           /* read-only: the value as the backend returned it, no copy */
    const kv_ops *ops;      /* releases val */
    struct shim_file *file; /* the record this buffer belongs to (which frees it) */
};

struct shim_file;

/* Live in-memory files in this process (atomic); the hooks look no further while it is 0. */
extern int shim_mem_live;

/* The placeholder's own descriptor (-1 before the first in-memory file). A program that
 * closes it (closefrom, close_range, dup2 onto it) makes the shim forget it: the next open
 * makes another. Call with the range the program closes; one atomic load when it is not. */
extern int shim_mem_placeholder;
void shim_mem_forget_placeholder(int p);
static inline void shim_mem_fd_closing(int lo, int hi)
{
    int p = __atomic_load_n(&shim_mem_placeholder, __ATOMIC_RELAXED);
    if (p >= 0 && p >= lo && p <= hi)
        shim_mem_forget_placeholder(p);
}

/* In a forked child: every buffer's lock made afresh (shim_fork_unlock). */
void shim_mem_after_fork_child(void);

/* 1 when in-memory files are allowed (ASYA_STATE_BUFFER is not "memfd"). */
int shim_mem_enabled(void);

/* A placeholder descriptor for an in-memory file (close-on-exec when oflags says so), with
 * its buffer (belonging to record file) made from v into *out: a read-only file keeps v
 * itself (released later through ops), a writable one copies it. Returns the descriptor or
 * -errno (v untouched then); -ENOSYS when the file must be a memfd instead (no placeholder
 * can be made, or the descriptor would be 0, 1 or 2, which stdio uses past the hooks). */
int shim_mem_open(kv_value *v, const kv_ops *ops, int oflags, struct shim_file *file,
                  struct shim_mem **out);

/* The buffer of fd when it is an in-memory file, else NULL. It comes locked, with a
 * reference on its record (so a close in another thread frees neither): hand it back with
 * shim_mem_put. No lock and no lookup beyond the descriptor table's when none is live. */
struct shim_mem *shim_mem_get(int fd);
void shim_mem_put(struct shim_mem *m);

/* For a caller that holds a reference on m's record already: m locked, or NULL (unlocked)
 * when it is settled; shim_mem_unlock releases it. */
struct shim_mem *shim_mem_lock(struct shim_mem *m);
void shim_mem_unlock(struct shim_mem *m);

/* Moves an in-memory file into a memfd under the same descriptor number. 0 (also for a
 * descriptor that is not one) or -errno (the file stays in memory then). */
int shim_mem_settle(int fd);

/* shim_mem_settle for the shim's own callers, inside the guard (where the hooks' calls,
 * shim_mem_settle among them, leave every descriptor alone). */
int shim_mem_settle_own(int fd);

/* Settles every in-memory file of the process (before fork, exec, spawn). */
void shim_mem_settle_all(void);

/* Settles the file a /proc/self/fd/N, /dev/fd/N... path names, if it is one; and the one a
 * bare number under a directory descriptor (openat of /proc/self/fd) may name. */
void shim_mem_settle_path(const char *path);
void shim_mem_settle_at(int dirfd, const char *path);

/* fd's length when it is an in-memory file: 1 (*len set), else 0. */
int shim_mem_size(int fd, size_t *len);

/* fcntl on an in-memory file: F_GETFL and F_SETFL are served, F_GETFD and F_SETFD go to the
 * placeholder, anything else settles the file first. 1 served (*res set, errno on failure),
 * 0 for libc. */
int shim_mem_fcntl(int fd, int cmd, void *arg, int *res);

/* The last descriptor of f is gone: its buffer is released (m stays, freed with f). */
void shim_mem_release(struct shim_mem *m);

#endif
