/* real.h: the next definition (libc's) of every hooked symbol, each looked up with
 * dlsym(RTLD_NEXT) on its first use and kept; no dlsym per call, none at start-up.
 * Call as real_open()(path, flags, mode). The table is generated from shim/hooks.def. */
#ifndef SHIM_REAL_H
#define SHIM_REAL_H

#include <dirent.h>
#include <fcntl.h>
#include <fts.h>
#include <spawn.h>
#include <stdint.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/types.h>
#include <utime.h>

/* glibc 2.33+ no longer declares the old stat entry points; programs built earlier call them. */
int __xstat(int ver, const char *path, struct stat *st);
int __xstat64(int ver, const char *path, struct stat64 *st);
int __lxstat(int ver, const char *path, struct stat *st);
int __lxstat64(int ver, const char *path, struct stat64 *st);
int __fxstat(int ver, int fd, struct stat *st);
int __fxstat64(int ver, int fd, struct stat64 *st);
int __fxstatat(int ver, int dirfd, const char *path, struct stat *st, int flags);
int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *st, int flags);
int __xmknod(int ver, const char *path, mode_t mode, dev_t *dev);
int __xmknodat(int ver, int dirfd, const char *path, mode_t mode, dev_t *dev);
char *__getcwd_chk(char *buf, size_t size, size_t buflen);
char *__getwd_chk(char *buf, size_t buflen);
char *__realpath_chk(const char *path, char *resolved, size_t resolvedlen);
ssize_t __readlink_chk(const char *path, char *buf, size_t size, size_t buflen);
ssize_t __readlinkat_chk(int dirfd, const char *path, char *buf, size_t size, size_t buflen);
ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen);
ssize_t __pread_chk(int fd, void *buf, size_t n, off_t off, size_t buflen);
ssize_t __pread64_chk(int fd, void *buf, size_t n, off_t off, size_t buflen);
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);

#define HOOK(ret, name, params) typedef ret(*real_##name##_fn) params;
#include "shim/hooks.def"
#undef HOOK

struct real_fns {
#define HOOK(ret, name, params) real_##name##_fn name;
#include "shim/hooks.def"
#undef HOOK
};

extern struct real_fns real_fns;

/* dlsym(RTLD_NEXT, name); logs and returns NULL when libc has no such symbol. */
void *real_lookup(const char *name);

#define HOOK(ret, name, params)                                                      \
    static inline real_##name##_fn real_##name(void)                                 \
    {                                                                                \
        real_##name##_fn f = __atomic_load_n(&real_fns.name, __ATOMIC_ACQUIRE);      \
        if (__builtin_expect(f == NULL, 0)) {                                        \
            f = (real_##name##_fn)real_lookup(#name);                                \
            __atomic_store_n(&real_fns.name, f, __ATOMIC_RELEASE);                   \
        }                                                                            \
        return f;                                                                    \
    }
#include "shim/hooks.def"
#undef HOOK

/* A hot hook's common case, as a tail call: libc's function, once it is known, when quick
 * (an expression on the arguments) says nothing of the shim's is involved; else slow, a
 * function with the hook's own parameters, declared SHIM_SLOW (inlined, its frame would be
 * set up before the test). Neither path needs a frame, so a program that never touches a
 * mount pays a few instructions per call. */
#define SHIM_SLOW static __attribute__((noinline))
#define SHIM_FAST(name, quick, slow, ...)                                              \
    do {                                                                               \
        real_##name##_fn f_ = __atomic_load_n(&real_fns.name, __ATOMIC_ACQUIRE);      \
        if (__builtin_expect(f_ != NULL && (quick), 1))                                \
            return f_(__VA_ARGS__);                                                    \
        return slow(__VA_ARGS__);                                                      \
    } while (0)

#endif
