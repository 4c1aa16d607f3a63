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

struct shim_file {
    int refs;               /* references: table entries plus callers holding a taken record;
                               guarded by the table mutex */
    int fds;                /* table entries (descriptors) pointing here; same mutex */
    int mount_idx;          /* index in the mount table */
    char *rel;              /* path below the mount, owned */
    int oflags;             /* the flags open() was given */
    pid_t owner;            /* the process that commits it */
    int is_dir;             /* a directory opened with O_DIRECTORY (never committed) */
    int force;              /* commit even when the bytes are unchanged: O_TRUNC or created */
    int excl;               /* the commit is create-only (O_EXCL) */
    uint64_t rev;           /* revision read at open or last committed, 0 when none */
    int64_t mtime_ns;       /* that revision's time */
    size_t base_len;        /* length and hash of the bytes as read or last committed */
    uint64_t base_hash;
    struct shim_mem *mem;   /* an in-memory file's buffer (shim/mem.h), else NULL; its bytes
                               are released with the last descriptor, the struct with this */
    uint64_t carried;       /* revision memory carried across exec, applied at the first
                               commit (0: none; KV_REV_ABSENT: "absent") */
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

/* Frees an in-memory file's buffer with its record (shim/mem.c; weak, absent from the unit
 * tests, whose records have none). */
void fdtable_free_mem(struct shim_mem *m) __attribute__((weak));

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
