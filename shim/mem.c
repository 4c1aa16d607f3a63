/* mem.c: mount files served from memory until something needs a kernel file (see mem.h),
 * and the hooks that serve them: read, write, seek, truncate and their variants. The calls
 * that settle a file first (mmap, sendfile, ioctl, fdopen, system, popen, sendmsg with
 * descriptors) are here too. Each hook's foreign path is one atomic load (shim_mem_live) on
 * top of libc's call. */
#include "shim/shim.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/log.h"
#include "shim/inode.h"
#include "shim/mem.h"

int shim_mem_live;

int shim_mem_enabled(void)
{
    const char *v = shim_env(SHIM_ENV_BUFFER);
    return !v || strcmp(v, "memfd") != 0;
}

/* The placeholder every in-memory file's descriptor is a copy of: an O_PATH descriptor of
 * an empty sealed memfd, made once, high and close-on-exec. A call that reaches the kernel
 * with a copy gets EBADF (read, write, mmap), ENOTDIR (as a directory) or an empty sealed
 * file (reopened by name: the open hooks settle those first). */
int shim_mem_placeholder = -1;

void shim_mem_forget_placeholder(int p)
{
    __atomic_compare_exchange_n(&shim_mem_placeholder, &p, -1, 0, __ATOMIC_ACQ_REL,
                                __ATOMIC_ACQUIRE);
}

static int placeholder(void)
{
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    int p = __atomic_load_n(&shim_mem_placeholder, __ATOMIC_ACQUIRE);
    if (p >= 0)
        return p;
    pthread_mutex_lock(&mu);
    p = shim_mem_placeholder;
    if (p < 0) {
        int m = memfd_create("asya-state", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (m >= 0 && real_fcntl()(m, F_ADD_SEALS, (void *)(long)(F_SEAL_WRITE | F_SEAL_GROW |
                                                                F_SEAL_SHRINK | F_SEAL_SEAL)) == 0) {
            char proc[32];
            snprintf(proc, sizeof proc, "/proc/self/fd/%d", m);
            p = real_openat()(AT_FDCWD, proc, O_PATH | O_CLOEXEC);
            if (p >= 0) {
                p = shim_fd_high(p);
                __atomic_store_n(&shim_mem_placeholder, p, __ATOMIC_RELEASE);
            }
        }
        if (m >= 0)
            real_close()(m);
    }
    pthread_mutex_unlock(&mu);
    return p < 0 ? -ENOSYS : p;
}

int shim_mem_open(kv_value *v, const kv_ops *ops, int oflags, struct shim_file *file,
                  struct shim_mem **out)
{
    int ph = placeholder();
    if (ph < 0)
        return ph;
    struct shim_mem *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    pthread_mutex_init(&m->mu, NULL);
    m->file = file;
    m->flags = oflags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC | O_CLOEXEC);
    m->len = v->len;
    if ((oflags & O_ACCMODE) == O_RDONLY) {
        m->data = (char *)v->data; /* kept, never written */
        m->val = *v;
        m->ops = ops;
    } else if (v->len) {
        m->data = malloc(v->len);
        if (!m->data) {
            free(m);
            return -ENOMEM;
        }
        memcpy(m->data, v->data, v->len);
        m->cap = v->len;
    }
    int cmd = (oflags & O_CLOEXEC) ? F_DUPFD_CLOEXEC : F_DUPFD;
    int fd = real_fcntl()(ph, cmd, (void *)0L);
    if (fd < 0 && errno == EBADF) {
        /* another thread closed the placeholder (closefrom) since it was looked up */
        shim_mem_forget_placeholder(ph);
        ph = placeholder();
        fd = ph < 0 ? -1 : real_fcntl()(ph, cmd, (void *)0L);
        if (ph < 0)
            errno = ENOSYS;
    }
    if (fd >= 0 && fd <= STDERR_FILENO) {
        /* A program reopening stdin, stdout or stderr: stdio reads and writes it past the
         * hooks, so it gets a memfd (the number is free again for the caller's). */
        real_close()(fd);
        fd = -1;
        errno = ENOSYS;
    }
    if (fd < 0) {
        int r = -errno;
        if (m->cap)
            free(m->data);
        free(m);
        return r;
    }
    if ((oflags & O_ACCMODE) == O_RDONLY)
        *v = (kv_value){ 0 }; /* the buffer holds it now */
    __atomic_add_fetch(&shim_mem_live, 1, __ATOMIC_RELEASE);
    *out = m;
    return fd;
}

static void release_locked(struct shim_mem *m)
{
    if (m->settled)
        return;
    if (m->ops)
        m->ops->release_value(&m->val);
    else
        free(m->data);
    m->data = NULL;
    m->len = m->cap = 0;
    m->settled = 1;
    __atomic_sub_fetch(&shim_mem_live, 1, __ATOMIC_RELEASE);
}

void shim_mem_release(struct shim_mem *m)
{
    pthread_mutex_lock(&m->mu);
    release_locked(m);
    pthread_mutex_unlock(&m->mu);
}

void fdtable_free_mem(struct shim_mem *m)
{
    shim_mem_release(m); /* a no-op when the last close released it already */
    free(m);
}

static struct shim_mem *mem_get(int fd)
{
    if (__atomic_load_n(&shim_mem_live, __ATOMIC_ACQUIRE) == 0)
        return NULL;
    struct shim_file *f = fdtable_hold(fd);
    if (!f)
        return NULL;
    /* held: a close in another thread cannot free the record (or its buffer) under us */
    struct shim_mem *m = f->mem ? shim_mem_lock(f->mem) : NULL;
    if (!m)
        fdtable_unref(f);
    return m;
}

struct shim_mem *shim_mem_get(int fd)
{
    return shim_guard ? NULL : mem_get(fd);
}

void shim_mem_put(struct shim_mem *m)
{
    struct shim_file *f = m->file;
    pthread_mutex_unlock(&m->mu);
    fdtable_unref(f);
}

struct shim_mem *shim_mem_lock(struct shim_mem *m)
{
    pthread_mutex_lock(&m->mu);
    if (m->settled) {
        pthread_mutex_unlock(&m->mu);
        return NULL;
    }
    return m;
}

void shim_mem_unlock(struct shim_mem *m)
{
    pthread_mutex_unlock(&m->mu);
}

static int settle(struct shim_mem *m, int fd)
{
    if (!m)
        return 0;
    int kfd = shim_buffer_open(m->data, m->len, m->flags | O_CLOEXEC);
    int r = kfd < 0 ? kfd : 0;
    if (r == 0 && m->pos && real_lseek()(kfd, m->pos, SEEK_SET) < 0)
        r = -errno;
    int fdflags = r == 0 ? real_fcntl()(fd, F_GETFD, NULL) : 0;
    if (r == 0 && fdflags < 0)
        r = -errno;
    if (r == 0 && real_dup3()(kfd, fd, (fdflags & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0)
        r = -errno;
    if (r == 0) /* the record's descriptors are this memfd now */
        __atomic_store_n(&m->file->kid, shim_fd_kid(kfd), __ATOMIC_RELEASE);
    if (kfd >= 0)
        real_close()(kfd);
    if (r == 0)
        release_locked(m);
    shim_mem_put(m);
    return r;
}

int shim_mem_settle(int fd)
{
    return settle(shim_mem_get(fd), fd);
}

int shim_mem_settle_own(int fd)
{
    return settle(mem_get(fd), fd);
}

void shim_mem_settle_all(void)
{
    if (__atomic_load_n(&shim_mem_live, __ATOMIC_ACQUIRE) == 0 || shim_guard)
        return;
    for (int fd = fdtable_next(0); fd >= 0; fd = fdtable_next(fd + 1))
        shim_mem_settle(fd);
}

void shim_mem_settle_path(const char *path)
{
    /* Any name ending in "fd/N" may be a /proc alias of descriptor N (/proc/self/fd/N,
     * /proc/<pid>/task/<tid>/fd/N, /dev/fd/N, /proc//self/fd/N, fd/N from /proc/self): N is
     * settled if it is an in-memory file. A name that only looks like one costs a settle,
     * never a wrong answer. (A symbolic link elsewhere to such a name is not seen.) */
    size_t len = strlen(path), d = len;
    while (d > 0 && path[d - 1] >= '0' && path[d - 1] <= '9')
        d--;
    if (d == len || len - d > 9 || d < 3 || strncmp(path + d - 3, "fd/", 3) != 0 ||
        (d > 3 && path[d - 4] != '/'))
        return;
    shim_mem_settle(atoi(path + d));
}

void shim_mem_settle_at(int dirfd, const char *path)
{
    /* openat(open("/proc/self/fd"), "N"): a bare number under a directory descriptor. */
    if (dirfd == AT_FDCWD || !path || *path < '0' || *path > '9')
        return;
    size_t n = strspn(path, "0123456789");
    if (n <= 9 && path[n] == '\0')
        shim_mem_settle(atoi(path));
}

void shim_mem_after_fork_child(void)
{
    /* A thread of the parent may have held a buffer's lock (a read, a write) at the fork:
     * the child has no such thread. Every file is settled (shim_fork_lock). */
    for (int fd = fdtable_next(0); fd >= 0; fd = fdtable_next(fd + 1)) {
        struct shim_file *f = fdtable_get(fd);
        if (f && f->mem)
            pthread_mutex_init(&f->mem->mu, NULL);
    }
}

/* ---- the hooks ----
 * off_t is 64-bit on this target, so each 64 variant is the same call: it forwards to the
 * plain hook, and the plain hook's libc function serves both. */

enum { IO_WRITE = 1, IO_AT_POS = 2, IO_APPEND = 4 };

/* Copies up to n bytes at off out of m. */
static size_t copy_out(const struct shim_mem *m, void *buf, size_t n, off_t off)
{
    if ((size_t)off >= m->len)
        return 0;
    size_t c = m->len - (size_t)off < n ? m->len - (size_t)off : n;
    memcpy(buf, m->data + off, c);
    return c;
}

/* No value can be larger than NATS's largest max_payload (64 MiB): a buffer is refused past
 * it (EFBIG at once, where the commit would fail with EFBIG anyway), so a write at a far
 * offset never zero-fills gigabytes of memory as a sparse memfd would not. */
#define MEM_MAX ((size_t)64 << 20)

/* Sets the length to len: zero-fills growth, keeps capacity on shrinking. */
static int set_len(struct shim_mem *m, size_t len)
{
    if (len > MEM_MAX || (m->max && len > m->max))
        return -EFBIG;
    if (len > m->cap) {
        size_t cap = m->cap ? m->cap : 256;
        while (cap < len)
            cap = cap > SIZE_MAX / 2 ? len : cap * 2;
        char *d = realloc(m->data, cap);
        if (!d)
            return -ENOMEM;
        m->data = d;
        m->cap = cap;
    }
    if (len > m->len)
        memset(m->data + m->len, 0, len - m->len);
    m->len = len;
    return 0;
}

/* Copies n bytes from buf into m at off (a write of nothing changes nothing, as the kernel
 * has it). */
static int copy_in(struct shim_mem *m, const void *buf, size_t n, off_t off)
{
    if (n == 0)
        return 0;
    if (n > MEM_MAX || (size_t)off > MEM_MAX - n || (m->max && (size_t)off + n > m->max))
        return -EFBIG;
    size_t end = (size_t)off + n;
    int r = end > m->len ? set_len(m, end) : 0;
    if (r == 0 && n)
        memcpy(m->data + off, buf, n);
    return r;
}

/* The one body of every read and write on an in-memory file: iov[0..cnt) at off, or at the
 * file position (IO_AT_POS, which then moves). The byte count or -errno, as the kernel
 * gives them for a local file (EBADF for the wrong access mode; O_APPEND writes at the end,
 * pwrite included, as Linux does). */
static ssize_t mem_io(struct shim_mem *m, const struct iovec *iov, int cnt, off_t off,
                      unsigned how)
{
    int acc = m->flags & O_ACCMODE;
    if ((how & IO_WRITE) ? acc == O_RDONLY : acc == O_WRONLY)
        return -EBADF;
    if (cnt < 0 || cnt > IOV_MAX || (!(how & IO_AT_POS) && off < 0))
        return -EINVAL;
    if ((how & IO_WRITE) && ((how & IO_APPEND) || (m->flags & O_APPEND)))
        off = (off_t)m->len;
    else if (how & IO_AT_POS)
        off = m->pos;
    size_t done = 0;
    int r = 0;
    for (int i = 0; i < cnt; i++) {
        if (how & IO_WRITE) {
            if ((r = copy_in(m, iov[i].iov_base, iov[i].iov_len, off + (off_t)done)) < 0)
                break;
            done += iov[i].iov_len;
        } else {
            size_t c = copy_out(m, iov[i].iov_base, iov[i].iov_len, off + (off_t)done);
            done += c;
            if (c < iov[i].iov_len)
                break;
        }
    }
    if (r < 0 && done == 0)
        return r;
    if (how & IO_AT_POS)
        m->pos = off + (off_t)done;
    return (ssize_t)done;
}

/* Serves an I/O call on fd from memory: 1 served (*res set; errno on failure), 0 for libc. */
/* A write or truncate that failed for want of room (the buffer unchanged) poisons the open
 * file: its close returns the error and commits nothing, so the old value stays. */
static void poison(struct shim_mem *m, int err)
{
    struct shim_inode *ino = m->file ? m->file->ino : NULL;
    if ((err == -EFBIG || err == -ENOMEM || err == -ENOSPC) && ino &&
        shim_inode_poison(ino, err) == 0) /* the first: one line (rel: old names stay valid) */
        log_at(LOG_WARN, "%s: write refused: %s; the file will not be committed", ino->rel,
               err == -EFBIG ? "value larger than the bucket or server allows"
                             : strerror(-err));
}

static int mem_call(int fd, const struct iovec *iov, int cnt, off_t off, unsigned how,
                    ssize_t *res)
{
    struct shim_mem *m = shim_mem_get(fd);
    if (!m)
        return 0;
    ssize_t r = mem_io(m, iov, cnt, off, how);
    if (r < 0 && (how & IO_WRITE))
        poison(m, (int)r);
    shim_mem_put(m);
    *res = r < 0 ? shim_fail((int)r) : r;
    return 1;
}

/* The hot hooks' quick test (SHIM_FAST): no in-memory file is open. */
static inline int none_live(void)
{
    return __atomic_load_n(&shim_mem_live, __ATOMIC_RELAXED) == 0;
}

/* preadv2/pwritev2: offset -1 is the file position; RWF_APPEND appends. */
static unsigned v2_how(off_t off, int flags, unsigned how)
{
    return how | (off == -1 ? IO_AT_POS : 0) | ((flags & RWF_APPEND) ? IO_APPEND : 0);
}

SHIM_SLOW ssize_t read_slow(int fd, void *buf, size_t n)
{
    struct iovec v = { buf, n };
    ssize_t r;
    return mem_call(fd, &v, 1, 0, IO_AT_POS, &r) ? r : real_read()(fd, buf, n);
}

SHIM_EXPORT ssize_t read(int fd, void *buf, size_t n)
{
    SHIM_FAST(read, none_live(), read_slow, fd, buf, n);
}

SHIM_EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
    if (n > buflen)
        return real___read_chk()(fd, buf, n, buflen); /* libc reports the overflow */
    return read(fd, buf, n);
}

SHIM_SLOW ssize_t pread_slow(int fd, void *buf, size_t n, off_t off)
{
    struct iovec v = { buf, n };
    ssize_t r;
    return mem_call(fd, &v, 1, off, 0, &r) ? r : real_pread()(fd, buf, n, off);
}

SHIM_EXPORT ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
    SHIM_FAST(pread, none_live(), pread_slow, fd, buf, n, off);
}

SHIM_EXPORT ssize_t pread64(int fd, void *buf, size_t n, off_t off)
{
    return pread(fd, buf, n, off);
}

SHIM_EXPORT ssize_t __pread_chk(int fd, void *buf, size_t n, off_t off, size_t buflen)
{
    if (n > buflen)
        return real___pread_chk()(fd, buf, n, off, buflen);
    return pread(fd, buf, n, off);
}

SHIM_EXPORT ssize_t __pread64_chk(int fd, void *buf, size_t n, off_t off, size_t buflen)
{
    return __pread_chk(fd, buf, n, off, buflen);
}

SHIM_EXPORT ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
    ssize_t r;
    return mem_call(fd, iov, cnt, 0, IO_AT_POS, &r) ? r : real_readv()(fd, iov, cnt);
}

SHIM_EXPORT ssize_t preadv(int fd, const struct iovec *iov, int cnt, off_t off)
{
    ssize_t r;
    return mem_call(fd, iov, cnt, off, 0, &r) ? r : real_preadv()(fd, iov, cnt, off);
}

SHIM_EXPORT ssize_t preadv64(int fd, const struct iovec *iov, int cnt, off_t off)
{
    return preadv(fd, iov, cnt, off);
}

SHIM_EXPORT ssize_t preadv2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
    ssize_t r;
    return mem_call(fd, iov, cnt, off, v2_how(off, flags, 0), &r)
               ? r : real_preadv2()(fd, iov, cnt, off, flags);
}

SHIM_EXPORT ssize_t preadv64v2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
    return preadv2(fd, iov, cnt, off, flags);
}

SHIM_SLOW ssize_t write_slow(int fd, const void *buf, size_t n)
{
    struct iovec v = { (void *)buf, n };
    ssize_t r;
    return mem_call(fd, &v, 1, 0, IO_WRITE | IO_AT_POS, &r) ? r : real_write()(fd, buf, n);
}

SHIM_EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
    SHIM_FAST(write, none_live(), write_slow, fd, buf, n);
}

SHIM_SLOW ssize_t pwrite_slow(int fd, const void *buf, size_t n, off_t off)
{
    struct iovec v = { (void *)buf, n };
    ssize_t r;
    return mem_call(fd, &v, 1, off, IO_WRITE, &r) ? r : real_pwrite()(fd, buf, n, off);
}

SHIM_EXPORT ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    SHIM_FAST(pwrite, none_live(), pwrite_slow, fd, buf, n, off);
}

SHIM_EXPORT ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    return pwrite(fd, buf, n, off);
}

SHIM_EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    ssize_t r;
    return mem_call(fd, iov, cnt, 0, IO_WRITE | IO_AT_POS, &r) ? r
                                                               : real_writev()(fd, iov, cnt);
}

SHIM_EXPORT ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    ssize_t r;
    return mem_call(fd, iov, cnt, off, IO_WRITE, &r) ? r : real_pwritev()(fd, iov, cnt, off);
}

SHIM_EXPORT ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
{
    return pwritev(fd, iov, cnt, off);
}

SHIM_EXPORT ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
    ssize_t r;
    return mem_call(fd, iov, cnt, off, v2_how(off, flags, IO_WRITE), &r)
               ? r : real_pwritev2()(fd, iov, cnt, off, flags);
}

SHIM_EXPORT ssize_t pwritev64v2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
    return pwritev2(fd, iov, cnt, off, flags);
}

/* The one body of lseek and lseek64 on an in-memory file. */
static off_t mem_seek(struct shim_mem *m, off_t off, int whence)
{
    off_t base, len = (off_t)m->len;
    switch (whence) {
    case SEEK_SET: base = 0; break;
    case SEEK_CUR: base = m->pos; break;
    case SEEK_END: base = len; break;
    case SEEK_DATA:
    case SEEK_HOLE:
        if (off < 0 || off >= len)
            return -ENXIO;
        return m->pos = whence == SEEK_DATA ? off : len;
    default: return -EINVAL;
    }
    if ((off > 0 && base > INT64_MAX - off) || base + off < 0)
        return -EINVAL; /* as Linux answers for a regular file */
    return m->pos = base + off;
}

SHIM_SLOW off_t lseek_slow(int fd, off_t off, int whence)
{
    struct shim_mem *m = shim_mem_get(fd);
    if (!m)
        return real_lseek()(fd, off, whence);
    off_t r = mem_seek(m, off, whence);
    shim_mem_put(m);
    return r < 0 ? shim_fail((int)r) : r;
}

SHIM_EXPORT off_t lseek(int fd, off_t off, int whence)
{
    SHIM_FAST(lseek, none_live(), lseek_slow, fd, off, whence);
}

SHIM_EXPORT off_t lseek64(int fd, off_t off, int whence)
{
    return lseek(fd, off, whence);
}

SHIM_EXPORT off_t llseek(int fd, off_t off, int whence)
{
    return lseek(fd, off, whence);
}

SHIM_EXPORT int ftruncate(int fd, off_t len)
{
    struct shim_mem *m = shim_mem_get(fd);
    if (!m)
        return real_ftruncate()(fd, len);
    int r = (m->flags & O_ACCMODE) == O_RDONLY || len < 0 ? -EINVAL : set_len(m, (size_t)len);
    if (r < 0)
        poison(m, r);
    shim_mem_put(m);
    return r < 0 ? shim_fail(r) : 0;
}

SHIM_EXPORT int ftruncate64(int fd, off_t len)
{
    return ftruncate(fd, len);
}

int shim_mem_size(int fd, size_t *len)
{
    struct shim_mem *m = shim_mem_get(fd);
    if (!m)
        return 0;
    *len = m->len;
    shim_mem_put(m);
    return 1;
}

int shim_mem_fcntl(int fd, int cmd, void *arg, int *res)
{
    if (cmd == F_GETFD || cmd == F_SETFD)
        return 0; /* the descriptor's own flag: the placeholder carries it */
    struct shim_mem *m = shim_mem_get(fd);
    if (!m)
        return 0;
    const int settable = O_APPEND | O_NONBLOCK | O_ASYNC | O_DIRECT | O_NOATIME;
    if (cmd == F_GETFL) {
        *res = m->flags | 0100000; /* the kernel's O_LARGEFILE, always set on 64-bit */
    } else if (cmd == F_SETFL) {
        m->flags = (m->flags & ~settable) | ((int)(long)arg & settable);
        *res = 0;
    } else {
        shim_mem_put(m);
        int r = shim_mem_settle(fd); /* everything else is the kernel's */
        *res = r < 0 ? shim_fail(r) : 0;
        return r < 0;
    }
    shim_mem_put(m);
    return 1;
}

/* Advice: nothing to advise for a buffer in memory. */
SHIM_EXPORT int posix_fadvise(int fd, off_t off, off_t len, int advice)
{
    struct shim_mem *m = shim_mem_get(fd);
    if (!m)
        return real_posix_fadvise()(fd, off, len, advice);
    shim_mem_put(m);
    return len < 0 || advice < POSIX_FADV_NORMAL || advice > POSIX_FADV_NOREUSE ? EINVAL : 0;
}

SHIM_EXPORT int posix_fadvise64(int fd, off_t off, off_t len, int advice)
{
    return posix_fadvise(fd, off, len, advice);
}

/* 1 when fd is an in-memory file (nothing of the kernel's to advise, flush or ask). */
static int in_memory(int fd)
{
    struct shim_mem *m = shim_mem_get(fd);
    if (m)
        shim_mem_put(m);
    return m != NULL;
}

SHIM_EXPORT ssize_t readahead(int fd, off_t off, size_t count)
{
    return in_memory(fd) ? 0 : real_readahead()(fd, off, count);
}

/* The commit happens at close or fsync; there is nothing else to flush. */
SHIM_EXPORT int syncfs(int fd)
{
    return in_memory(fd) ? 0 : real_syncfs()(fd);
}

SHIM_EXPORT int sync_file_range(int fd, off_t off, off_t n, unsigned int flags)
{
    return in_memory(fd) ? 0 : real_sync_file_range()(fd, off, n, flags);
}

/* libc's isatty asks the kernel, which would say EBADF of the placeholder. */
SHIM_EXPORT int isatty(int fd)
{
    if (!in_memory(fd))
        return real_isatty()(fd);
    errno = ENOTTY;
    return 0;
}

/* ---- calls that need the kernel file: settle first, then libc ---- */

/* Settles fd when it is an in-memory file; 0, or -1 with errno when that failed. */
static int need_kernel(int fd)
{
    if (__atomic_load_n(&shim_mem_live, __ATOMIC_RELAXED) == 0)
        return 0;
    int r = shim_mem_settle(fd);
    return r < 0 ? shim_fail(r) : 0;
}

/* A shared writable mapping of a mount file keeps its open file (shim/inode.h) until it is
 * unmapped: its bytes move into the inode's master first, so what is written through the
 * mapping after close is still committed, at munmap, msync or exit. */
SHIM_EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (flags & MAP_ANONYMOUS)
        return real_mmap()(addr, len, prot, flags, fd, off);
    if (need_kernel(fd) < 0)
        return MAP_FAILED;
    struct shim_file *f = shim_guard ? NULL : fdtable_get(fd);
    int track = f && f->ino && (flags & MAP_TYPE) != MAP_PRIVATE && (prot & PROT_WRITE);
    int r = track ? shim_inode_share(f->ino) : 0;
    if (r < 0)
        return errno = -r, MAP_FAILED;
    void *p = real_mmap()(addr, len, prot, flags, fd, off);
    if (p != MAP_FAILED && track && (r = shim_inode_mapped(fd, p, len)) < 0) {
        real_munmap()(p, len);
        return errno = -r, MAP_FAILED;
    }
    return p;
}

SHIM_EXPORT int munmap(void *addr, size_t len)
{
    int r = real_munmap()(addr, len);
    if (r < 0 || shim_guard || !__atomic_load_n(&shim_inode_maps_live, __ATOMIC_RELAXED))
        return r;
    int c = shim_inode_unmapped(addr, len); /* the last use of a file commits it */
    return c < 0 ? shim_fail(c) : 0;
}

/* The mappings of mount files that move go on being tracked at their new address (so their
 * munmap commits). The new address is read only with MREMAP_FIXED, as glibc does. */
SHIM_EXPORT void *mremap(void *old, size_t old_len, size_t len, int flags, ...)
{
    void *want = NULL;
    if (flags & MREMAP_FIXED) {
        va_list ap;
        va_start(ap, flags);
        want = va_arg(ap, void *);
        va_end(ap);
    }
    void *p = real_mremap()(old, old_len, len, flags, want);
    if (p == MAP_FAILED || shim_guard || !__atomic_load_n(&shim_inode_maps_live, __ATOMIC_RELAXED))
        return p;
    int c = shim_inode_remapped(old, old_len, p, len);
    if (c < 0)
        log_at(LOG_ERROR, "mremap of a state file's mapping: %s", strerror(-c));
    return p;
}

SHIM_EXPORT int msync(void *addr, size_t len, int flags)
{
    int r = real_msync()(addr, len, flags);
    if (r < 0 || shim_guard || !__atomic_load_n(&shim_inode_maps_live, __ATOMIC_RELAXED))
        return r;
    int c = shim_inode_msync(addr, len);
    return c < 0 ? shim_fail(c) : 0;
}

SHIM_EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    return mmap(addr, len, prot, flags, fd, off);
}

SHIM_EXPORT ssize_t sendfile(int out, int in, off_t *off, size_t n)
{
    if (need_kernel(out) < 0 || need_kernel(in) < 0)
        return -1;
    return real_sendfile()(out, in, off, n);
}

SHIM_EXPORT ssize_t sendfile64(int out, int in, off_t *off, size_t n)
{
    return sendfile(out, in, off, n);
}

SHIM_EXPORT ssize_t copy_file_range(int in, off_t *inoff, int out, off_t *outoff, size_t n,
                                    unsigned int flags)
{
    if (need_kernel(out) < 0 || need_kernel(in) < 0)
        return -1;
    return real_copy_file_range()(in, inoff, out, outoff, n, flags);
}

SHIM_EXPORT ssize_t splice(int in, off_t *inoff, int out, off_t *outoff, size_t n,
                           unsigned int flags)
{
    if (need_kernel(out) < 0 || need_kernel(in) < 0)
        return -1;
    return real_splice()(in, inoff, out, outoff, n, flags);
}

SHIM_EXPORT int fallocate(int fd, int mode, off_t off, off_t len)
{
    return need_kernel(fd) < 0 ? -1 : real_fallocate()(fd, mode, off, len);
}

SHIM_EXPORT int fallocate64(int fd, int mode, off_t off, off_t len)
{
    return fallocate(fd, mode, off, len);
}

SHIM_EXPORT int posix_fallocate(int fd, off_t off, off_t len)
{
    int r = shim_mem_settle(fd); /* returns the error, as posix_fallocate does */
    return r < 0 ? -r : real_posix_fallocate()(fd, off, len);
}

SHIM_EXPORT int posix_fallocate64(int fd, off_t off, off_t len)
{
    return posix_fallocate(fd, off, len);
}

SHIM_EXPORT int ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return need_kernel(fd) < 0 ? -1 : real_ioctl()(fd, req, arg);
}

SHIM_EXPORT FILE *fdopen(int fd, const char *mode)
{
    return need_kernel(fd) < 0 ? NULL : real_fdopen()(fd, mode);
}

/* system and popen start their child through glibc's internal spawn, which no hook sees:
 * the child must inherit kernel files. */
SHIM_EXPORT int system(const char *cmd)
{
    shim_mem_settle_all();
    return real_system()(cmd);
}

SHIM_EXPORT FILE *popen(const char *cmd, const char *mode)
{
    shim_mem_settle_all();
    return real_popen()(cmd, mode);
}

/* A descriptor passed to another process (SCM_RIGHTS) must be a kernel file. 0 or -1. */
static int settle_passed(const struct msghdr *msg)
{
    if (!msg || !msg->msg_controllen)
        return 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
            c->cmsg_len < CMSG_LEN(0))
            continue; /* a malformed one is the kernel's to refuse */
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int pfd;
            memcpy(&pfd, CMSG_DATA(c) + i * sizeof(int), sizeof pfd);
            if (need_kernel(pfd) < 0)
                return -1;
        }
    }
    return 0;
}

SHIM_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    if (__atomic_load_n(&shim_mem_live, __ATOMIC_RELAXED) && settle_passed(msg) < 0)
        return -1;
    return real_sendmsg()(fd, msg, flags);
}

SHIM_EXPORT int sendmmsg(int fd, struct mmsghdr *vec, unsigned int n, int flags)
{
    for (unsigned int i = 0; vec && i < n && __atomic_load_n(&shim_mem_live, __ATOMIC_RELAXED);
         i++)
        if (settle_passed(&vec[i].msg_hdr) < 0)
            return -1;
    return real_sendmmsg()(fd, vec, n, flags);
}
