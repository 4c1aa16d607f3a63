/* sys.c: syscall(), the raw entry point. Node's libuv closes and stats files through
 * syscall(SYS_close) and syscall(SYS_statx): those, and the open and stat calls, go to the
 * hooks (which hand local paths and descriptors to libc unchanged); every other number goes
 * to the real syscall() with its six arguments untouched. copy_file_range, read, write... on
 * a mount descriptor need nothing: the descriptor is the buffer (a memfd). */
#include "shim/shim.h"

#include <stdarg.h>
#include <sys/syscall.h>
#include <unistd.h>

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
    if (!shim_guard) {
        switch (number) {
        case SYS_close:
            if (fdtable_get((int)a[0]))
                return close((int)a[0]);
            break;
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
        case SYS_open:
            return open((const char *)a[0], (int)a[1], (mode_t)a[2]);
        default:
            break;
        }
    }
    return real_syscall()(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
