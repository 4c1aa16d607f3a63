/* fdtable.h: which descriptors of this process are open mount files, and what each holds.
 *
 * Lookup (fdtable_get) is lock-free: a two-level array of atomic pointers whose chunks are
 * allocated on first use and never freed, so a foreign descriptor costs two loads. Changes
 * take the table's mutex. A shim_file is shared by every descriptor that refers to the same
 * open file (dup, dup2, inherited across exec); refs counts them and the last one frees it.
 * Like the kernel's own table, using a descriptor while another thread closes it is the
 * program's race: the record stays valid until the last reference is dropped. */
#ifndef SHIM_FDTABLE_H
#define SHIM_FDTABLE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FDTABLE_MAX (1 << 20)

struct shim_mem;

struct shim_inode;

struct shim_file {
    int refs;               /* references: table entries plus callers holding a taken record;
                               guarded by the table mutex */
    int fds;                /* table entries (descriptors) pointing here; same mutex */
    int mount_idx;          /* index in the mount table */
    char *rel;              /* a directory's path below the mount, owned; NULL for a file,
                               whose name is its inode's (shim_file_rel) */
    int oflags;             /* the flags open() was given */
    pid_t owner;            /* the process that opened it */
    int is_dir;             /* a directory opened with O_DIRECTORY (never committed) */
    struct shim_inode *ino; /* a file's open file in this process (shim/inode.h), shared by
                               every record of its key; one use and reference per record */
    int closed;             /* its inode use ended (its last descriptor closed) */
    int lost;               /* a descriptor of it was closed without the shim seeing it (a
                               raw system call), found when its number came back */
    uint64_t kid;           /* shim_fd_kid of its descriptors' kernel file (0: unknown);
                               atomic: a settle or a move to the master changes it */
    struct shim_mem *mem;   /* an in-memory file's buffer (shim/mem.h), else NULL; its bytes
                               are released with the last descriptor, the struct with this */
};

/* Records fd -> f and takes a reference. 0, -EBADF for an fd out of range, -ENOMEM. */
int fdtable_set(int fd, struct shim_file *f);

/* The record for fd, or NULL for a descriptor that is not a mount file. No lock. */
struct shim_file *fdtable_get(int fd);

/* 1 when no descriptor has a record (most processes, always): inline, for the hot hooks. */
extern int fdtable_entries;
static inline int fdtable_empty(void)
{
    return __atomic_load_n(&fdtable_entries, __ATOMIC_RELAXED) == 0;
}

/* The record for fd with a reference taken (release with fdtable_unref), or NULL: for a
 * caller that uses it while another thread may close fd. */
struct shim_file *fdtable_hold(int fd);

/* Forgets fd and returns its record with the reference fd held (NULL when none): the caller
 * finishes with it and calls fdtable_unref. *last (may be NULL) is set when fd was the last
 * descriptor of the record: of two threads taking its last two descriptors at once, exactly
 * one is told so. */
struct shim_file *fdtable_take(int fd, int *last);

/* Frees an in-memory file's buffer with its record (shim/mem.c), and drops the record's
 * inode reference when the record still held one (shim/inode.c). Weak: absent from the unit
 * tests, whose records have neither. */
void fdtable_free_mem(struct shim_mem *m) __attribute__((weak));
void fdtable_free_ino(struct shim_file *f) __attribute__((weak));

/* Drops one reference; returns the number left. At 0 the record is freed. */
int fdtable_unref(struct shim_file *f);

/* Around fork: held across it, so the child never inherits the mutex held by a thread it
 * does not have (the child starts with a fresh one). */
void fdtable_fork_lock(void);
void fdtable_fork_unlock(int child);

/* The lowest descriptor >= fd that is in the table, or -1. No lock, no allocation (safe
 * between fork and exec). */
int fdtable_next(int fd);

/* Calls fn for every descriptor in the table (under the mutex: fn must not call back). */
void fdtable_each(void (*fn)(int fd, struct shim_file *f, void *arg), void *arg);

/* A fast 64-bit hash (not cryptographic), for the "bytes changed?" test and inode numbers. */
uint64_t fdtable_hash(const void *data, size_t len, uint64_t seed);
#define FDTABLE_HASH_SEED 0xcbf29ce484222325ULL

#endif
