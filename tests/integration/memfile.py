"""memfile.py DIR: in-memory mount files (shim/mem.h) behave as local files do, run under the
shim with DIR a mount directory. Each check prints one line, "NAME|RESULT"; t_memfile.sh
runs the same script on a local directory and compares the two outputs line by line, so a
result is right when it is what the kernel gives for a local file. Lines starting with "="
carry facts that differ by design (they are checked by t_memfile.sh itself)."""
import errno
import fcntl
import mmap
import os
import socket
import subprocess
import threading

from localcmp import D, check, get, p, put


put("base", b"0123456789")


def rdonly():
    fd = os.open(p("base"), os.O_RDONLY)
    try:
        return (os.read(fd, 4), os.read(fd, 100), os.read(fd, 5), os.fstat(fd).st_size,
                fcntl.fcntl(fd, fcntl.F_GETFL) & (os.O_ACCMODE | os.O_APPEND))
    finally:
        os.close(fd)


def seeks():
    fd = os.open(p("base"), os.O_RDONLY)
    try:
        out = [os.lseek(fd, -3, os.SEEK_END), os.read(fd, 10), os.lseek(fd, 2, os.SEEK_SET),
               os.lseek(fd, 3, os.SEEK_CUR), os.read(fd, 1), os.lseek(fd, 20, os.SEEK_SET),
               os.read(fd, 1), os.lseek(fd, 0, os.SEEK_DATA), os.lseek(fd, 4, os.SEEK_HOLE)]
        try:
            os.lseek(fd, -1, os.SEEK_SET)
        except OSError as e:
            out.append(errno.errorcode[e.errno])
        try:
            os.lseek(fd, 10, os.SEEK_DATA)
        except OSError as e:
            out.append(errno.errorcode[e.errno])
        return out
    finally:
        os.close(fd)


def positional():
    fd = os.open(p("base"), os.O_RDONLY)
    try:
        a = bytearray(3)
        b = bytearray(4)
        return (os.pread(fd, 4, 3), os.pread(fd, 4, 8), os.pread(fd, 4, 50),
                os.preadv(fd, [a, b], 1), bytes(a), bytes(b), os.read(fd, 2))
    finally:
        os.close(fd)


def wrong_mode():
    out = []
    fd = os.open(p("base"), os.O_RDONLY)
    for op in (lambda: os.write(fd, b"x"), lambda: os.ftruncate(fd, 1)):
        try:
            out.append(op())
        except OSError as e:
            out.append(errno.errorcode[e.errno])
    os.close(fd)
    fd = os.open(p("wo"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        out.append(os.read(fd, 1))
    except OSError as e:
        out.append(errno.errorcode[e.errno])
    os.close(fd)
    return out


def writes():
    fd = os.open(p("w1"), os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    out = [os.write(fd, b"hello"), os.pwrite(fd, b"J", 0), os.lseek(fd, 8, os.SEEK_SET),
           os.write(fd, b"!"), os.fstat(fd).st_size, os.pread(fd, 20, 0),
           os.writev(fd, [b"ab", b"cd"]), os.pwritev(fd, [b"X", b"Y"], 1)]
    os.ftruncate(fd, 4)
    out += [os.fstat(fd).st_size, os.lseek(fd, 0, os.SEEK_CUR), os.pread(fd, 20, 0)]
    os.ftruncate(fd, 6)
    out.append(os.pread(fd, 20, 0))
    os.lseek(fd, 100, os.SEEK_SET)
    out += [os.write(fd, b""), os.pwrite(fd, b"", 500), os.fstat(fd).st_size]
    os.close(fd)
    out.append(get("w1"))
    return out


def appends():
    put("ap", b"abc")
    fd = os.open(p("ap"), os.O_WRONLY | os.O_APPEND)
    out = [os.write(fd, b"de"), os.lseek(fd, 0, os.SEEK_CUR), os.pwrite(fd, b"Z", 0),
           os.lseek(fd, 0, os.SEEK_SET), os.write(fd, b"f"), os.lseek(fd, 0, os.SEEK_CUR),
           fcntl.fcntl(fd, fcntl.F_GETFL) & (os.O_ACCMODE | os.O_APPEND)]
    fcntl.fcntl(fd, fcntl.F_SETFL, 0)   # O_APPEND off
    os.lseek(fd, 0, os.SEEK_SET)
    out.append(os.write(fd, b"A"))
    os.close(fd)
    out.append(get("ap"))
    with open(p("ap"), "a") as f:          # Python's "a"
        f.write("+py")
    out.append(get("ap"))
    return out


def python_io():
    put("py", b"line1\nline2\nline3\n")
    with open(p("py")) as f:
        lines = f.readlines()
        tty = f.isatty()
    with open(p("py"), "r+b") as f:
        f.seek(0, 2)
        f.write(b"line4\n")
        f.seek(0)
        head = f.read(5)
        f.truncate(12)
    return lines, tty, head, get("py")


def mapped():
    put("mm", b"abcdefgh")
    with open(p("mm"), "r+b") as f:
        m = mmap.mmap(f.fileno(), 0)
        first = bytes(m[:4])
        m[0:2] = b"XY"
        m.flush()
        m.close()
        f.seek(0)
        through_fd = f.read()
    return first, through_fd, get("mm")


def forked():
    # parent and child share the open file, offset included, as with a local file
    fd = os.open(p("base"), os.O_RDONLY)
    os.read(fd, 2)
    pid = os.fork()
    if pid == 0:
        os.read(fd, 3)
        os._exit(0)
    os.waitpid(pid, 0)
    r = os.read(fd, 3)
    os.close(fd)
    return r


def inherited():
    fd = os.open(p("base"), os.O_RDONLY)
    os.read(fd, 1)
    out = subprocess.run(["cat", f"/dev/fd/{fd}"], pass_fds=[fd], capture_output=True).stdout
    out2 = subprocess.run(["sh", "-c", f"head -c 3 <&{fd}"], pass_fds=[fd],
                          capture_output=True).stdout
    os.close(fd)
    return out, out2


def reopened():
    out = []
    for name in ("/proc/self/fd/{}", "/dev/fd/{}", "/proc/%d/fd/{}" % os.getpid(),
                 "/proc/self/task/%d/fd/{}" % threading.get_native_id(), "/proc//self/fd/{}"):
        fd = os.open(p("base"), os.O_RDONLY)
        out.append(os.stat(name.format(fd)).st_size)
        with open(name.format(fd), "rb") as f:
            out.append(f.read())
        os.close(fd)
    fd = os.open(p("base"), os.O_RDONLY)
    d = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
    r = os.open(str(fd), os.O_RDONLY, dir_fd=d)   # openat(dirfd, "N")
    out.append(os.read(r, 100))
    for x in (r, d, fd):
        os.close(x)
    return out


def closed_range():
    fd = os.open(p("base"), os.O_RDONLY)
    os.closerange(fd, fd + 1)
    h = os.open("/etc/hostname", os.O_RDONLY)
    r = os.read(h, 100)
    os.close(h)
    return r


def duplicated():
    fd = os.open(p("base"), os.O_RDONLY)
    os.read(fd, 1)
    d = os.dup(fd)
    a = os.read(d, 2)
    b = os.read(fd, 2)
    os.dup2(fd, 50)
    c = os.read(50, 2)
    os.close(50)
    os.close(d)
    e = os.read(fd, 2)
    os.close(fd)
    return a, b, c, e


def passed_fd():
    fd = os.open(p("base"), os.O_RDONLY)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    socket.send_fds(a, [b"x"], [fd])
    _, fds, _, _ = socket.recv_fds(b, 1, 1)
    r = os.read(fds[0], 4)
    for x in fds + [fd]:
        os.close(x)
    a.close()
    b.close()
    return r


def locked():
    """A local file's lock is the kernel's; a mount file's fails with ENOLCK (no lease in NATS
    yet, shim/lock.c). The unlock succeeds either way and the file reads on."""
    with open(p("base"), "rb") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX)
            r = "locked"
        except OSError as e:
            r = "OSError " + errno.errorcode.get(e.errno, str(e.errno))
        fcntl.flock(f, fcntl.LOCK_UN)
        return f"{r}, unlocked, {f.read()!r}"


def advised():
    fd = os.open(p("base"), os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    r = os.read(fd, 3)
    os.close(fd)
    return r


def large():
    data = bytes(range(256)) * 2400  # 600 KiB: above the commit path's mmap threshold
    put("big", data)
    fd = os.open(p("big"), os.O_RDONLY)
    got = b""
    while True:
        c = os.read(fd, 65536)
        if not c:
            break
        got += c
    os.close(fd)
    return got == data, len(got)


for name, fn in [("rdonly", rdonly), ("seeks", seeks), ("positional", positional),
                 ("wrong_mode", wrong_mode), ("writes", writes), ("appends", appends),
                 ("python_io", python_io), ("mapped", mapped), ("forked", forked),
                 ("inherited", inherited), ("reopened", reopened), ("duplicated", duplicated),
                 ("closed_range", closed_range),
                 ("passed_fd", passed_fd), ("advised", advised),
                 ("large", large)]:
    check(name, fn)

# Facts that differ by design: locks, and where the descriptor lives.
print("=locked|" + locked(), flush=True)
fd = os.open(p("base"), os.O_RDONLY)
print("=link|" + os.readlink(f"/proc/self/fd/{fd}"), flush=True)
os.read(fd, 1)
os.dup(fd)  # settles it
print("=link after dup|" + os.readlink(f"/proc/self/fd/{fd}"), flush=True)
