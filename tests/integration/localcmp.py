"""localcmp.py: what the scripts run once on a local directory and once on a mount share
(memfile.py, inode.py): the directory (argv[1]), paths in it, whole-file helpers, and check,
which prints one "NAME|RESULT" line the shell test compares between the two runs."""
import errno
import os
import sys

D = sys.argv[1]


def p(name):
    return os.path.join(D, name)


def put(name, data):
    with open(p(name), "wb") as f:
        f.write(data)


def get(name):
    with open(p(name), "rb") as f:
        return f.read()


def check(name, fn):
    try:
        r = fn()
    except OSError as e:
        r = "OSError " + errno.errorcode.get(e.errno, str(e.errno))
    print(f"{name}|{r!r}", flush=True)
