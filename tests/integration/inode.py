"""inode.py DIR: one open file per key in a process (shim/inode.h, issue 11), run under the
shim with DIR a mount directory and, for comparison, on a local directory. Each check prints
one line, "NAME|RESULT"; t_inode.sh compares the two outputs line by line, so a result is
right when it is what the kernel gives for a local file. Every case here lost data or hid an
error before the shared open file."""
import errno
import mmap
import os
import tempfile

from localcmp import D, check, get, p, put


def exists(name):
    return os.path.exists(p(name))


# 1. Two descriptors of one file in one thread: both writes are kept.
def two_appends():
    put("ap", b"orig\n")
    a = os.open(p("ap"), os.O_WRONLY | os.O_APPEND)
    b = os.open(p("ap"), os.O_WRONLY | os.O_APPEND)
    os.write(a, b"A\n")
    os.write(b, b"B\n")
    os.close(a)
    os.close(b)
    return get("ap")


def write_then_read_other():
    put("wr", b"0123456789")
    r = os.open(p("wr"), os.O_RDONLY)
    w = os.open(p("wr"), os.O_RDWR)
    os.pwrite(w, b"xyz", 2)
    seen = os.pread(r, 20, 0)
    size = os.fstat(r).st_size
    os.close(w)
    os.close(r)
    return seen, size, get("wr")


def truncate_by_second_open():
    put("tr", b"old bytes")
    a = os.open(p("tr"), os.O_RDWR)
    b = os.open(p("tr"), os.O_WRONLY | os.O_TRUNC)
    size = os.fstat(a).st_size
    os.write(b, b"new")
    os.close(b)
    rest = os.read(a, 10)
    os.close(a)
    return size, rest, get("tr")


def offsets_are_separate():
    put("off", b"abcdef")
    a = os.open(p("off"), os.O_RDONLY)
    b = os.open(p("off"), os.O_RDONLY)
    x = os.read(a, 2)
    y = os.read(b, 3)
    z = os.read(a, 2)
    os.close(a)
    os.close(b)
    return x, y, z


def readonly_second_is_readonly():
    put("ro", b"abc")
    w = os.open(p("ro"), os.O_RDWR)
    r = os.open(p("ro"), os.O_RDONLY)
    try:
        os.write(r, b"x")
        out = "wrote"
    except OSError as e:
        out = errno.errorcode[e.errno]
    os.close(r)
    os.close(w)
    return out, get("ro")


# 3. Writes through a shared mapping made before close(fd).
def mmap_after_close():
    fd = os.open(p("mm"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.ftruncate(fd, 8)
    m = mmap.mmap(fd, 8, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    os.close(fd)
    m[0:8] = b"mapped!!"
    m.flush()
    after_msync = get("mm")
    m[0:3] = b"MAP"
    m.close()
    return after_msync, get("mm")


# 4. Rename or unlink of an open file.
def rename_open():
    put("rn", b"before")
    fd = os.open(p("rn"), os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b"after")
    os.rename(p("rn"), p("rn2"))
    os.close(fd)
    return exists("rn"), get("rn2")


def unlink_open():
    put("ul", b"before")
    fd = os.open(p("ul"), os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b"after")
    os.unlink(p("ul"))
    os.close(fd)
    return exists("ul")


def replaced_by_rename():
    put("dst", b"dst")
    put("src", b"src")
    fd = os.open(p("dst"), os.O_WRONLY | os.O_APPEND)
    os.rename(p("src"), p("dst"))
    os.write(fd, b" orphan")
    os.close(fd)
    return get("dst"), exists("src")


# 5. O_CREAT creates, even read-only and without a write.
def creat_rdonly():
    os.close(os.open(p("lock1"), os.O_CREAT | os.O_RDONLY, 0o644))
    os.close(os.open(p("lock2"), os.O_CREAT | os.O_EXCL | os.O_RDONLY, 0o644))
    return exists("lock1"), get("lock1"), exists("lock2")


def creat_again_excl():
    try:
        os.close(os.open(p("lock2"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        return "created"
    except FileExistsError:
        return "EEXIST"


# 6. A created file exists while it is open.
def created_is_there():
    fd = os.open(p("fresh"), os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"12345")
    out = [os.stat(p("fresh")).st_size, os.path.isfile(p("fresh")), os.access(p("fresh"), os.R_OK),
           "fresh" in os.listdir(D)]
    os.chmod(p("fresh"), 0o600)
    with open(p("fresh"), "rb") as f:
        out.append(f.read())
    try:
        os.open(p("fresh"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        out.append("created twice")
    except FileExistsError:
        out.append("EEXIST")
    os.close(fd)
    out.append(get("fresh"))
    return out


def renamed_while_open(a, b, flags, data):
    """Opens a with flags, writes data, renames a to b, closes: (a exists?, b's bytes)."""
    fd = os.open(p(a), os.O_CREAT | os.O_WRONLY | flags, 0o644)
    os.write(fd, data)
    os.rename(p(a), p(b))
    os.close(fd)
    return exists(a), get(b)


def created_renamed():
    return renamed_while_open("c1", "c2", os.O_EXCL, b"lockdata")


def created_unlinked():
    fd = os.open(p("c3"), os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"x")
    os.unlink(p("c3"))
    st = exists("c3")
    os.close(fd)
    return st, exists("c3"), "c3" in os.listdir(D)


# A file opened "w" (O_CREAT|O_TRUNC: no read, so the shim does not know whether the key
# existed) exists for the program while it is open: unlink and rename find it.
def truncated_new_unlinked():
    fd = os.open(p("tn1"), os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    os.write(fd, b"x")
    os.unlink(p("tn1"))
    os.close(fd)
    return exists("tn1")


def truncated_new_renamed():
    return renamed_while_open("tn2", "tn3", os.O_TRUNC, b"moved")


def truncated_old_renamed():
    put("tn4", b"old value")
    fd = os.open(p("tn4"), os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    os.rename(p("tn4"), p("tn5"))
    seen = get("tn5")  # the truncation, not the old value
    os.write(fd, b"new")
    os.close(fd)
    return exists("tn4"), seen, get("tn5")


# truncate(2) by name of a file open here cuts the open file, as on a disk.
def truncate_open_by_name():
    out = []
    fd = os.open(p("tb1"), os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
    os.write(fd, b"hello world")
    os.truncate(p("tb1"), 2)
    out.append((os.fstat(fd).st_size, os.pread(fd, 20, 0)))
    os.close(fd)
    put("tb2", b"stored")
    fd = os.open(p("tb2"), os.O_RDWR)
    os.write(fd, b"XXXXXXXXXXXX")
    os.truncate(p("tb2"), 3)
    os.close(fd)
    put("tb3", b"XYZ")
    fd = os.open(p("tb3"), os.O_RDONLY)
    os.truncate(p("tb3"), 2)
    out.append(os.pread(fd, 10, 0))
    os.close(fd)
    return out, get("tb1"), get("tb2"), get("tb3")


def tempfiles():
    before = sorted(os.listdir(D))
    with tempfile.TemporaryFile(dir=D) as f:
        f.write(b"temp")
        f.seek(0)
        a = f.read()
    with tempfile.NamedTemporaryFile(dir=D) as f:
        f.write(b"named")
        f.flush()
        name = os.path.basename(f.name)
        listed = name in os.listdir(D)
        with open(f.name, "rb") as g:
            b = g.read()
    return a, listed, b, sorted(os.listdir(D)) == before


def mkstemp_then_stat():
    fd, name = tempfile.mkstemp(dir=D)
    try:
        st = os.stat(name).st_size
        os.write(fd, b"abc")
        return st, os.stat(name).st_size
    finally:
        os.close(fd)
        os.unlink(name)


# 8. Directories at open, as a local disk checks them.
def dir_errors():
    os.makedirs(p("dd/src"), exist_ok=True)
    put("dd/file", b"x")
    out = []
    for path, flags in [("dd/src", os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                        ("dd/src/new/", os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                        ("dd/file/x", os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                        ("dd/nodir/x", os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                        ("dd/nodir/x", os.O_WRONLY | os.O_CREAT),
                        ("dd/src", os.O_WRONLY | os.O_CREAT | os.O_EXCL),
                        ("dd/file/", os.O_RDONLY),
                        ("dd/nope", os.O_WRONLY | os.O_TRUNC)]:
        try:
            os.close(os.open(p(path), flags, 0o644))
            out.append("opened")
        except OSError as e:
            out.append(errno.errorcode[e.errno])
    try:
        tempfile.mkstemp(dir=p("dd/nodir"))
        out.append("made")
    except OSError as e:
        out.append(errno.errorcode[e.errno])
    return out, os.path.isdir(p("dd/src")), sorted(os.listdir(p("dd")))


for name, fn in [
    ("two_appends", two_appends),
    ("write_then_read_other", write_then_read_other),
    ("truncate_by_second_open", truncate_by_second_open),
    ("offsets_are_separate", offsets_are_separate),
    ("readonly_second_is_readonly", readonly_second_is_readonly),
    ("mmap_after_close", mmap_after_close),
    ("rename_open", rename_open),
    ("unlink_open", unlink_open),
    ("replaced_by_rename", replaced_by_rename),
    ("creat_rdonly", creat_rdonly),
    ("creat_again_excl", creat_again_excl),
    ("created_is_there", created_is_there),
    ("created_renamed", created_renamed),
    ("created_unlinked", created_unlinked),
    ("truncated_new_unlinked", truncated_new_unlinked),
    ("truncated_new_renamed", truncated_new_renamed),
    ("truncated_old_renamed", truncated_old_renamed),
    ("truncate_open_by_name", truncate_open_by_name),
    ("tempfiles", tempfiles),
    ("mkstemp_then_stat", mkstemp_then_stat),
    ("dir_errors", dir_errors),
]:
    check(name, fn)
