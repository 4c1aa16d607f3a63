/* fdtable.c: descriptor -> shim_file (see fdtable.h). Invariant: an entry is non-NULL only
 * while it holds one reference of its record. Lock order: table mutex only, never held across
 * a call out of this file. */
#include "shim/fdtable.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_BITS 10
#define CHUNK (1 << CHUNK_BITS)
#define CHUNKS (FDTABLE_MAX / CHUNK)

static struct shim_file **chunks[CHUNKS];
int fdtable_entries; /* non-NULL slots, so an empty table is known without a walk */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static struct shim_file **slot(int fd, int create)
{
    if (fd < 0 || fd >= FDTABLE_MAX)
        return NULL;
    struct shim_file **c = __atomic_load_n(&chunks[fd >> CHUNK_BITS], __ATOMIC_ACQUIRE);
    if (!c && create) {
        c = calloc(CHUNK, sizeof *c);
        if (!c)
            return NULL;
        __atomic_store_n(&chunks[fd >> CHUNK_BITS], c, __ATOMIC_RELEASE);
    }
    return c ? &c[fd & (CHUNK - 1)] : NULL;
}

int fdtable_set(int fd, struct shim_file *f)
{
    if (fd < 0 || fd >= FDTABLE_MAX)
        return -EBADF;
    pthread_mutex_lock(&lock);
    struct shim_file **s = slot(fd, 1);
    struct shim_file *old = NULL;
    if (s) {
        old = *s;
        f->refs++;
        f->fds++;
        if (old)
            old->fds--;
        if (old && old != f)
            old->lost = 1; /* the kernel gave the number out again: it was closed unseen */
        __atomic_store_n(s, f, __ATOMIC_RELEASE);
        if (!old)
            __atomic_add_fetch(&fdtable_entries, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&lock);
    if (old)
        fdtable_unref(old);
    return s ? 0 : -ENOMEM;
}

struct shim_file *fdtable_get(int fd)
{
    if (fdtable_empty())
        return NULL; /* most processes never open a mount file */
    struct shim_file **s = slot(fd, 0);
    return s ? __atomic_load_n(s, __ATOMIC_ACQUIRE) : NULL;
}

struct shim_file *fdtable_hold(int fd)
{
    if (!fdtable_get(fd))
        return NULL;
    pthread_mutex_lock(&lock);
    struct shim_file **s = slot(fd, 0);
    struct shim_file *f = s ? *s : NULL;
    if (f)
        f->refs++;
    pthread_mutex_unlock(&lock);
    return f;
}

struct shim_file *fdtable_take(int fd, int *last)
{
    if (!fdtable_get(fd))
        return NULL;
    pthread_mutex_lock(&lock);
    struct shim_file **s = slot(fd, 0);
    struct shim_file *f = s ? *s : NULL;
    if (f) {
        __atomic_store_n(s, NULL, __ATOMIC_RELEASE);
        __atomic_sub_fetch(&fdtable_entries, 1, __ATOMIC_RELEASE);
        if (last)
            *last = --f->fds == 0;
        else
            f->fds--;
    }
    pthread_mutex_unlock(&lock);
    return f;
}

int fdtable_unref(struct shim_file *f)
{
    pthread_mutex_lock(&lock);
    int left = --f->refs;
    pthread_mutex_unlock(&lock);
    if (left == 0) {
        free(f->rel);
        if (f->ino && fdtable_free_ino)
            fdtable_free_ino(f); /* first: an in-memory file's bytes may still be committed */
        if (f->mem && fdtable_free_mem)
            fdtable_free_mem(f->mem);
        free(f);
    }
    return left;
}

void fdtable_fork_lock(void)
{
    pthread_mutex_lock(&lock);
}

void fdtable_fork_unlock(int child)
{
    if (child)
        pthread_mutex_init(&lock, NULL);
    else
        pthread_mutex_unlock(&lock);
}

int fdtable_next(int fd)
{
    if (__atomic_load_n(&fdtable_entries, __ATOMIC_ACQUIRE) == 0)
        return -1;
    for (; fd >= 0 && fd < FDTABLE_MAX; fd++) {
        struct shim_file **c = __atomic_load_n(&chunks[fd >> CHUNK_BITS], __ATOMIC_ACQUIRE);
        if (!c) {
            fd |= CHUNK - 1; /* skip the whole chunk */
            continue;
        }
        if (__atomic_load_n(&c[fd & (CHUNK - 1)], __ATOMIC_ACQUIRE))
            return fd;
    }
    return -1;
}

void fdtable_each(void (*fn)(int fd, struct shim_file *f, void *arg), void *arg)
{
    pthread_mutex_lock(&lock);
    for (int c = 0; c < CHUNKS; c++) {
        if (!chunks[c])
            continue;
        for (int i = 0; i < CHUNK; i++)
            if (chunks[c][i])
                fn(c * CHUNK + i, chunks[c][i], arg);
    }
    pthread_mutex_unlock(&lock);
}

uint64_t fdtable_hash(const void *data, size_t len, uint64_t seed)
{
    /* Four independent lanes of eight bytes, whose multiplies overlap (a 64 KiB value in
     * 5 us on the development VM, where one lane took 17), then eight bytes a step, then
     * the tail. A read-modify-write cycle hashes its value twice (open, commit). */
    const unsigned char *p = data;
    uint64_t h = seed ^ (len * 0x9e3779b97f4a7c15ULL);
    uint64_t a = h, b = h ^ 0x6a09e667f3bcc909ULL, c = h ^ 0xbb67ae8584caa73bULL,
             d = h ^ 0x3c6ef372fe94f82bULL;
    size_t i = 0;
    for (; i + 32 <= len; i += 32) {
        uint64_t w[4];
        memcpy(w, p + i, sizeof w);
        a = (a ^ w[0]) * 0xff51afd7ed558ccdULL;
        b = (b ^ w[1]) * 0xff51afd7ed558ccdULL;
        c = (c ^ w[2]) * 0xff51afd7ed558ccdULL;
        d = (d ^ w[3]) * 0xff51afd7ed558ccdULL;
        a ^= a >> 32;
        b ^= b >> 32;
        c ^= c >> 32;
        d ^= d >> 32;
    }
    if (i)
        h = ((((h ^ a) * 0xc4ceb9fe1a85ec53ULL ^ b) * 0xc4ceb9fe1a85ec53ULL ^ c) *
                 0xc4ceb9fe1a85ec53ULL ^ d) * 0xc4ceb9fe1a85ec53ULL;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
    }
    for (; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 29;
    return h;
}
