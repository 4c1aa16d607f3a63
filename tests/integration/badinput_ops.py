"""badinput_ops.py DIR: the everyday operations on DIR (a mount path), each printed as
"NAME ERRNO-NAME" ("NAME OK" on success). Files are closed explicitly, so an error at close
(the commit) is seen, not swallowed by the garbage collector."""
import errno
import os
import sys

d = sys.argv[1]


def write(p):
    with open(p, "w") as f:
        f.write("x")


def attempt(name, fn):
    try:
        fn()
        print(name, "OK")
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, e.errno))


attempt("write", lambda: write(d + "/f"))
attempt("read", lambda: open(d + "/f").read())
attempt("stat", lambda: os.stat(d + "/f"))
attempt("listdir", lambda: os.listdir(d))
attempt("mkdir", lambda: os.mkdir(d + "/sub"))
attempt("unlink", lambda: os.unlink(d + "/f"))
attempt("write_again", lambda: write(d + "/g"))
