/* sys.c: syscall(), the raw entry point. Node's libuv closes and stats files through
 * syscall(SYS_close) and syscall(SYS_statx): those, the open and stat calls, flock and
 * fcntl's lock commands go to the hooks (which hand local paths and descriptors to libc
 * unchanged); every other number goes to the real syscall() with its six arguments
 * untouched, after settling an in-memory file (shim/mem.h) among its descriptor arguments:
 * read, write, copy_file_range... then work on the memfd. */
#include "shim/shim.h"

#include <stdarg.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shim/mem.h"

/* Settles the in-memory files among a system call's descriptor arguments: the first
 * argument of the calls that take one there, and the second descriptor of the calls that
 * take two. Others (close, the stat calls) reach the hooks below. */
static void settle_args(long number, const long *a)
{
    switch (number) {
    case SYS_read: case SYS_write: case SYS_pread64: case SYS_pwrite64: case SYS_readv:
    case SYS_writev: case SYS_preadv: case SYS_pwritev: case SYS_preadv2: case SYS_pwritev2:
    case SYS_lseek: case SYS_ftruncate: case SYS_fallocate: case SYS_fadvise64:
    case SYS_readahead: case SYS_fcntl: case SYS_ioctl: case SYS_fstatfs:
    case SYS_fsync: case SYS_fdatasync:
        shim_mem_settle((int)a[0]);
        break;
    case SYS_sendfile: case SYS_tee:
        shim_mem_settle((int)a[0]);
        shim_mem_settle((int)a[1]);
        break;
    case SYS_splice: case SYS_copy_file_range:
        shim_mem_settle((int)a[0]);
        shim_mem_settle((int)a[2]);
        break;
    case SYS_mmap:
        shim_mem_settle((int)a[4]);
        break;
    default:
        break;
    }
}

/* The one place the variadic arguments are read: six longs, as the kernel takes them.
 * A caller passing fewer (syscall(SYS_gettid)) leaves the sixth on its own stack frame, read
 * but never used, as glibc's assembly syscall() reads all six registers; ASan would report
 * that read as a stack-buffer-underflow, hence no_sanitize_address. */
__attribute__((no_sanitize_address))
SHIM_EXPORT long syscall(long number, ...)
{
    va_list ap;
    long a[6];
    va_start(ap, number);
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    if (!shim_guard && __atomic_load_n(&shim_mem_live, __ATOMIC_RELAXED))
        settle_args(number, a);
    if (!shim_guard) {
        int r;
        switch (number) {
        case SYS_flock: /* the hooks: locks on mount files fail with ENOLCK (shim/lock.c) */
            return flock((int)a[0], (int)a[1]);
        case SYS_fcntl:
            if (shim_lock_fcntl((int)a[0], (int)a[1], (void *)a[2], &r))
                return r;
            break;
        case SYS_close:
            return close((int)a[0]);
        case SYS_close_range:
            return close_range((unsigned)a[0], (unsigned)a[1], (int)a[2]);
        case SYS_dup:
            return dup((int)a[0]);
#ifdef SYS_dup2
        case SYS_dup2:
            return dup2((int)a[0], (int)a[1]);
#endif
        case SYS_dup3:
            return dup3((int)a[0], (int)a[1], (int)a[2]);
        case SYS_statx:
            return shim_statx((int)a[0], (const char *)a[1], (int)a[2], (unsigned)a[3],
                              (struct statx *)a[4]);
        case SYS_newfstatat:
            return fstatat((int)a[0], (const char *)a[1], (struct stat *)a[2], (int)a[3]);
        case SYS_fstat:
            if (fdtable_get((int)a[0]))
                return fstat((int)a[0], (struct stat *)a[1]);
            break;
        case SYS_openat:
            return openat((int)a[0], (const char *)a[1], (int)a[2], (mode_t)a[3]);
#ifdef SYS_open
        case SYS_open:
            return open((const char *)a[0], (int)a[1], (mode_t)a[2]);
#endif
        default:
            break;
        }
    }
    return real_syscall()(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
