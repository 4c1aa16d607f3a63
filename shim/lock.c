/* lock.c: advisory locks on mount files: fcntl record and OFD locks, flock, lockf.
 *
 * NATS holds no lease for us yet, so a lock the kernel granted on this process's copy of a
 * file would protect nothing from another process (SQLite in two processes lost committed
 * transactions that way). The contract (SPEC, Operations) allows a lock that coordinates every
 * process or ENOLCK, never one that protects nothing. So on a mount descriptor every request
 * that takes or tests a lock fails with ENOLCK (logged once per process), and an unlock
 * succeeds and does nothing: nothing is ever held. The argument errors the kernel reports
 * before it looks at locks (EFAULT, EINVAL, EBADF for the access mode) keep their priority.
 * Local descriptors, and the shim's own calls (the guard), go to libc untouched; the file is
 * never settled (shim/mem.h) for a lock. */
#include "shim/shim.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "common/log.h"

/* The one rule, for a lock request on a mount descriptor: 0 for an unlock (take 0), else
 * -ENOLCK, with one warning per process. */
static int mount_lock(int take)
{
    static pid_t warned; /* the process that warned (a forked child warns again) */
    if (!take)
        return 0;
    pid_t pid = shim_pid();
    if (__atomic_exchange_n(&warned, pid, __ATOMIC_RELAXED) != pid) {
        shim_enter();
        log_at(LOG_WARN, "locks on mount files fail with ENOLCK: no lease in NATS yet, so a "
                         "lock here would not stop other processes");
        shim_leave();
    }
    return -ENOLCK;
}

/* 1 when fd is a mount descriptor of the program's (the lock is ours to answer). */
static int ours(int fd)
{
    return !shim_guard && fdtable_get(fd) != NULL;
}

/* fcntl's lock commands on mount descriptor fd, with the kernel's argument checks first.
 * 0 or -errno. */
static int fcntl_lock(int fd, int cmd, const struct flock *fl)
{
    int get = cmd == F_GETLK || cmd == F_OFD_GETLK;
    int ofd = cmd == F_OFD_SETLK || cmd == F_OFD_SETLKW || cmd == F_OFD_GETLK;
    if (!fl)
        return -EFAULT;
    if (fl->l_type != F_RDLCK && fl->l_type != F_WRLCK && (get || fl->l_type != F_UNLCK))
        return -EINVAL;
    if (fl->l_whence != SEEK_SET && fl->l_whence != SEEK_CUR && fl->l_whence != SEEK_END)
        return -EINVAL;
    if (ofd && fl->l_pid != 0)
        return -EINVAL;
    if (!get && fl->l_type != F_UNLCK) {
        int acc = fcntl(fd, F_GETFL) & O_ACCMODE; /* the hook: an in-memory file answers */
        if (acc == (fl->l_type == F_RDLCK ? O_WRONLY : O_RDONLY))
            return -EBADF;
    }
    return mount_lock(fl->l_type != F_UNLCK);
}

int shim_lock_fcntl(int fd, int cmd, void *arg, int *res)
{
    if (cmd != F_SETLK && cmd != F_SETLKW && cmd != F_GETLK && cmd != F_OFD_SETLK &&
        cmd != F_OFD_SETLKW && cmd != F_OFD_GETLK)
        return 0;
    if (!ours(fd))
        return 0;
    int r = fcntl_lock(fd, cmd, arg);
    *res = r < 0 ? shim_fail(r) : 0;
    return 1;
}

SHIM_EXPORT int flock(int fd, int op)
{
    if (!ours(fd))
        return real_flock()(fd, op);
    int cmd = op & ~LOCK_NB;
    if (cmd != LOCK_SH && cmd != LOCK_EX && cmd != LOCK_UN)
        return shim_fail(-EINVAL);
    int r = mount_lock(cmd != LOCK_UN);
    return r < 0 ? shim_fail(r) : 0;
}

/* glibc's lockf: an fcntl lock from the offset on, for len bytes (write locks). */
SHIM_EXPORT int lockf(int fd, int cmd, off_t len)
{
    if (!ours(fd))
        return real_lockf()(fd, cmd, len);
    struct flock fl = { .l_whence = SEEK_CUR, .l_len = len };
    int fcmd = F_SETLK;
    if (cmd == F_TEST) {
        fl.l_type = F_RDLCK;
        fcmd = F_GETLK;
    } else if (cmd == F_ULOCK) {
        fl.l_type = F_UNLCK;
    } else if (cmd == F_LOCK || cmd == F_TLOCK) {
        fl.l_type = F_WRLCK;
    } else {
        return shim_fail(-EINVAL);
    }
    int r = fcntl_lock(fd, fcmd, &fl);
    return r < 0 ? shim_fail(r) : 0;
}

SHIM_EXPORT int lockf64(int fd, int cmd, off_t len)
{
    return lockf(fd, cmd, len);
}
