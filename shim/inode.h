/* inode.h: the open files of this process, one per key (SPEC, Operations: "a second open of a
 * key already open in this process shares the open file").
 *
 * Every descriptor (struct shim_file, one per open file description) and every shared
 * writable mapping of a key points to one struct shim_inode. The inode holds what a commit
 * needs: the revision its bytes were read at (the revision memory a shared file commits
 * with), whether they changed, create-only, unlinked. While the key has one descriptor its
 * bytes live where open put them (an in-memory file or a memfd); when a second descriptor or
 * a shared mapping comes, the bytes move into the inode's master memfd (kfd) and every
 * descriptor of the key becomes a reopen of it (/proc/self/fd/kfd, each with its own offset
 * and access mode), so writes through one are read through the others, as on a local disk.
 * The inode is committed once, when its last reference (descriptor or mapping) goes, or at
 * fsync, msync and exit.
 *
 * Locks: the table lock guards the table, each inode's refs, hashed and rel; ino->mu guards
 * everything else in the inode and is held across its commit. Order: ino->mu, then the
 * table lock, then the descriptor table's mutex. */
#ifndef SHIM_INODE_H
#define SHIM_INODE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shim/fdtable.h"

struct shim_mem;

struct shim_inode {
    int refs;               /* references to the struct: records, mappings, callers; table
                               lock. Freed at 0 */
    int users;              /* records with descriptors, and mappings; table lock. Committed,
                               and no longer found by name, at 0 */
    int hashed;             /* found by name (0 once unlinked, replaced, or inherited by fork) */
    pthread_t tid;          /* the thread that opened it: shared by that thread's opens */
    int mount_idx;
    char *rel;              /* its current name: rename moves it (old names kept till free) */
    pid_t owner;            /* the process that commits it */
    pthread_mutex_t mu;     /* guards the fields below; held across a commit */
    uint64_t rev;           /* the revision its bytes are based on: read at open or last
                               committed; KV_REV_ABSENT: read and found absent; 0: unknown
                               (opened with O_TRUNC, nothing read): the thread's memory rules */
    int64_t mtime_ns;       /* that revision's time */
    size_t base_len;        /* length and hash of the bytes as read or last committed */
    uint64_t base_hash;
    int based;              /* base_len and base_hash are set */
    int writers;            /* a writable descriptor was ever opened on it */
    int force;              /* commit even when the bytes are unchanged: O_TRUNC or created */
    int excl;               /* the commit is create-only (O_EXCL) */
    int created;            /* made by an open here and not committed yet: not on the server */
    int unlinked;           /* unlinked or replaced by a rename: discarded, never committed */
    int poison;             /* -errno of a failed write, truncate or commit: every later
                               commit returns it and sends nothing (atomic, no lock) */
    uint64_t carried;       /* revision memory carried across exec (see shim_file) */
    int kfd;                /* the master memfd once shared, else -1 */
    unsigned forks;         /* shim_forks() when it was made: only children forked or
                               spawned later can have inherited it */
    int maps;               /* shared writable mappings alive */
    char **old_names;       /* names replaced by renames, freed with the inode */
    int n_old;
};

/* What open learnt, to make an inode from (shim_inode_add copies it). */
struct shim_inode_init {
    int mount_idx;
    const char *rel;
    uint64_t rev;
    int64_t mtime_ns;
    size_t base_len;
    uint64_t base_hash;
    int based, writers, force, excl, created;
    uint64_t carried;
    pid_t owner;
};

/* The open file of (idx, rel) in this process, or NULL. It comes with one use and one
 * reference (a new record's: shim_inode_close, then shim_inode_put). */
struct shim_inode *shim_inode_get(int idx, const char *rel);

/* The open file of (idx, rel) with a reference only (shim_inode_put), or NULL: to look at. */
struct shim_inode *shim_inode_find(int idx, const char *rel);

/* Makes the open file of in->rel, or, when another thread made one meanwhile, takes that one
 * (*raced set). With a use and a reference; NULL when out of memory. */
struct shim_inode *shim_inode_add(const struct shim_inode_init *in, int *raced);

/* An inode for an inherited record (exec): found or made, never hashed twice. */
struct shim_inode *shim_inode_adopt(const struct shim_inode_init *in);

/* One more use and reference (a shared mapping). */
void shim_inode_use(struct shim_inode *ino);

/* A use ends (a record's last descriptor closes, a mapping goes). When it was the last one,
 * the inode is no longer found by name and is committed by the contract's rules (fd/mem:
 * where its bytes are when it has no master, else -1/NULL): the commit's 0 or -errno. */
int shim_inode_close(struct shim_inode *ino, int fd, struct shim_mem *mem);
/* The same for a descriptor that could write: when other descriptors of the file stay open,
 * its bytes are committed now (a close's success means they landed), then as above. */
int shim_inode_close_written(struct shim_inode *ino, int fd, struct shim_mem *mem);

/* Commits again the files closed here while a forked child still held them (see inode.c),
 * those no child holds any more, or all of them at exit (at_exit: a warning for each still
 * held). 0 or the last commit's -errno. */
int shim_inode_commit_held(int at_exit);
/* A wait reaped a child where nothing may be committed (a signal handler): the next mount
 * path this process names commits what is held (shim_inode_commit_reaped), or its exit. */
void shim_inode_reaped_later(void);
void shim_inode_commit_reaped(void);

/* 1 when process pid has exited (gone, or a zombie: its exit's commits are done): a file it
 * opened and this process inherited is then this process's to commit. */
int shim_pid_exited(pid_t pid);

/* Drops a reference; the inode is freed with its last. */
void shim_inode_put(struct shim_inode *ino);

/* A write, truncate or commit failed with err: the file is never committed now. NULL: no-op.
 * Returns the earlier poison (0 when this is the first). */
int shim_inode_poison(struct shim_inode *ino, int err);

/* Commits the inode now (fsync, msync, exec) and keeps it open. 0 or -errno. */
int shim_inode_commit(struct shim_inode *ino, int fd, struct shim_mem *mem);

/* A second descriptor for an open inode: moves its bytes into the master memfd (once) and
 * returns a new descriptor reopening it with oflags. -errno on failure. */
int shim_inode_open(struct shim_inode *ino, int oflags);

/* Makes sure the inode has its master memfd (every descriptor then reopens it): for a
 * shared mapping. 0 or -errno. */
int shim_inode_share(struct shim_inode *ino);
/* truncate(2) by name of a file open here: its shared bytes cut (or zero-extended) to len,
 * committed at its last close like a write. 0 or -errno. */
int shim_inode_truncate(struct shim_inode *ino, off_t len);

/* The current length of the inode's bytes. 0 or -errno. */
int shim_inode_size(struct shim_inode *ino, size_t *len);

/* Unlinked by name: the inode of (idx, rel), if any, is detached (discarded at its last
 * reference). Returns 1 when one was open and had never been committed (nothing on the
 * server to delete), else 0. */
int shim_inode_unlink(int idx, const char *rel);

/* Renamed: the inode of from (if any) is now found as to; an inode open as to is detached
 * (replaced). The moved inode commits to its new name expecting rev_to (the revision the
 * rename wrote, or KV_REV_ABSENT / 0), unless the rename copied a revision of from other than
 * the one it read (rev_from, 0 when nothing was copied): then it keeps expecting its own and
 * conflicts. Returns 1 when from was open and never committed. */
int shim_inode_rename(int idx, const char *from, const char *to, uint64_t rev_to,
                      uint64_t rev_from);

/* Names of inodes created here and not committed yet that are directly below dir rel:
 * calls fn for each (under the table lock: fn must not call back). */
void shim_inode_each_created(int idx, const char *dir,
                             void (*fn)(const char *name, void *arg), void *arg);

/* A record's current name below its mount. */
const char *shim_file_rel(const struct shim_file *f);

/* Around fork (inside the descriptor table's fork lock): the child starts with an empty
 * table; inodes inherited through records stay, owned by the parent. */
void shim_inode_fork_lock(void);
void shim_inode_fork_unlock(int child);

/* Shared mappings: the inode of fd gains one (mmap succeeded at addr); munmap takes a range
 * out of every mapping (one wholly gone drops its use: an inode is committed when the last
 * byte of its last mapping goes); msync commits those that meet a range. Each returns 0 or
 * -errno. */
int shim_inode_mapped(int fd, void *addr, size_t len);
int shim_inode_unmapped(void *addr, size_t len);
/* mremap moved [old, old + old_len) to [addr, addr + len): the mappings follow it. */
int shim_inode_remapped(void *old, size_t old_len, void *addr, size_t len);
int shim_inode_msync(void *addr, size_t len);
int shim_inode_commit_mapped(void); /* at exit */
extern int shim_inode_maps_live;
/* Around fork, before shim_inode_fork_lock (shim/inode_maps.c). */
void shim_inode_maps_fork_lock(void);
void shim_inode_maps_fork_unlock(int child);

#endif
