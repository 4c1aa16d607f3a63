/* stdio.c: fopen, freopen and fclose on mount paths.
 *
 * glibc's stdio opens and closes through its internal open/close, never through the hooked
 * symbols, so a stream on a mount path is made here: the file is opened by the shim
 * (shim_open, a memfd buffer) and wrapped by libc's own fdopen with the program's mode.
 * fclose of a mount stream flushes, drops the descriptor (the commit, whose error fclose
 * returns) and then lets libc close it. fdopen of a descriptor already in the table only
 * needs it to be a kernel file (its hook, in shim/mem.c, settles an in-memory one). Foreign
 * streams cost one fdtable lookup. fcloseall is not hooked:
 * glibc's only flushes (it closes no descriptor), so the buffers stay open until close/exit. */
#include "shim/shim.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

/* The descriptor behind a stream, read from the FILE itself: fileno() would set errno for
 * streams without one (fmemopen, fopencookie), which are -1 here. */
static inline int stream_fd(FILE *stream)
{
    return stream ? stream->_fileno : -1;
}

static FILE *stream_fail(int err)
{
    shim_fail(err);
    return NULL;
}

/* Forgets mount descriptor fd without a commit (its record lives on in any other descriptor
 * of the file) and closes it; errno is kept. */
static void forget(int fd)
{
    int e = errno;
    struct shim_file *f = fdtable_take(fd, NULL);
    if (f)
        fdtable_unref(f);
    real_close()(fd);
    errno = e;
}

/* The one reading of an fopen mode string: "r", "w", "a" with "+", then any of "b", "x"
 * (O_EXCL), "e" (O_CLOEXEC), "m", "c" (glibc's own, no open flag); ",ccs=" ends it.
 * 0 and *oflags, or -EINVAL. */
static int mode_flags(const char *mode, int *oflags)
{
    int f;
    switch (mode ? *mode : '\0') {
    case 'r':
        f = O_RDONLY;
        break;
    case 'w':
        f = O_WRONLY | O_CREAT | O_TRUNC;
        break;
    case 'a':
        f = O_WRONLY | O_CREAT | O_APPEND;
        break;
    default:
        return -EINVAL;
    }
    for (const char *c = mode + 1; *c && *c != ','; c++) {
        if (*c == '+')
            f = (f & ~O_ACCMODE) | O_RDWR;
        else if (*c == 'x')
            f |= O_EXCL;
        else if (*c == 'e')
            f |= O_CLOEXEC;
    }
    *oflags = f;
    return 0;
}

/* Opens a mount path (already resolved to one) for a stream: the descriptor or -errno. */
static int open_for_stream(const char *path, const char *mode)
{
    int oflags;
    int r = mode_flags(mode, &oflags);
    /* a memfd from the start: stdio reads and writes past the hooks */
    return r < 0 ? r : shim_open(AT_FDCWD, path, oflags, 0666, SHIM_OPEN_KERNEL);
}

/* The one body of fopen and fopen64. */
static FILE *fopen_body(const char *path, const char *mode, FILE *(*real)(const char *,
                                                                          const char *))
{
    if (shim_guard || shim_foreign(path))
        return real(path, mode);
    struct shim_path p;
    int r = shim_resolve(AT_FDCWD, path, &p);
    if (r < 0)
        return stream_fail(r);
    if (r == 0)
        return real(p.local, mode);
    int fd = open_for_stream(path, mode);
    if (fd < 0)
        return stream_fail(fd);
    FILE *s = fdopen(fd, mode);
    if (!s)
        forget(fd); /* nothing was written: no commit */
    return s;
}

SHIM_EXPORT FILE *fopen(const char *path, const char *mode)
{
    return fopen_body(path, mode, real_fopen());
}

SHIM_EXPORT FILE *fopen64(const char *path, const char *mode)
{
    return fopen_body(path, mode, real_fopen64());
}

/* Flushes a mount stream and drops its descriptor (committing when it was the owner's
 * last): 0 or -errno, the first failure. The stream still holds the kernel descriptor. */
static int stream_drop(FILE *stream, int fd)
{
    int r = fflush(stream) == EOF ? -errno : 0;
    int d = shim_drop(fd);
    return r < 0 ? r : d;
}

SHIM_EXPORT int fclose(FILE *stream)
{
    int fd = stream_fd(stream);
    if (shim_guard || !fdtable_get(fd))
        return real_fclose()(stream);
    int r = stream_drop(stream, fd);
    int c = real_fclose()(stream);
    if (r < 0) {
        shim_fail(r);
        return EOF;
    }
    return c;
}

/* Points stream at mount descriptor fd, which stays the caller's: libc reopens it by its
 * /proc name (a new open file of the same buffer, on the stream's old descriptor number when
 * it had one), and the stream's descriptor joins fd's record. The stream or NULL (errno). */
static FILE *reopen_onto(int fd, const char *mode, FILE *stream,
                         FILE *(*real)(const char *, const char *, FILE *))
{
    char proc[32], m[8];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    /* The buffer exists now: "x" would refuse it, "e" is already on fd. */
    size_t n = 0;
    for (const char *c = mode; *c && *c != ',' && n + 1 < sizeof m; c++)
        if (*c != 'x')
            m[n++] = *c;
    m[n] = '\0';
    struct shim_file *f = fdtable_get(fd);
    if (!f)
        return stream_fail(-EBADF);
    FILE *s = real(proc, m, stream);
    if (!s)
        return NULL;
    int r = fdtable_set(stream_fd(s), f);
    if (r < 0) {
        real_fclose()(s);
        return stream_fail(r);
    }
    return s;
}

/* The one body of freopen and freopen64. A NULL path (a mode change of the same file) goes
 * to libc: it keeps the descriptor number, so the record stays. As the C standard says, a
 * failure to flush or commit the old file does not stop the reopen (it is logged). */
static FILE *freopen_body(const char *path, const char *mode, FILE *stream,
                          FILE *(*real)(const char *, const char *, FILE *))
{
    if (shim_guard || !path)
        return real(path, mode, stream);
    struct shim_path p;
    int r = shim_resolve(AT_FDCWD, path, &p);
    int old = stream_fd(stream);
    if (fdtable_get(old)) {
        int d = stream_drop(stream, old);
        if (d < 0)
            log_at(LOG_WARN, "freopen: the file on descriptor %d was not committed: %s", old,
                   strerror(-d));
    }
    if (r != 1) {
        if (r == 0)
            return real(p.local, mode, stream);
        real_fclose()(stream);
        return stream_fail(r);
    }
    int fd = open_for_stream(path, mode);
    if (fd < 0) {
        real_fclose()(stream);
        return stream_fail(fd);
    }
    FILE *s = reopen_onto(fd, mode, stream, real);
    forget(fd); /* the stream's descriptor holds the record now (or, on failure, nothing) */
    return s;
}

SHIM_EXPORT FILE *freopen(const char *path, const char *mode, FILE *stream)
{
    return freopen_body(path, mode, stream, real_freopen());
}

SHIM_EXPORT FILE *freopen64(const char *path, const char *mode, FILE *stream)
{
    return freopen_body(path, mode, stream, real_freopen64());
}
