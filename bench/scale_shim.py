"""scale_shim.py ROOT: the shim's side of bench.py's scale section, run under the preload.
Reads batches "OP SIZE N" from stdin (bench/common.h's protocol; SIZE unused) and prints the
N times in microseconds on one line. ROOT is a mount directory holding d/ (10 files) and m/.

  open-missing    open() of a missing file for reading (FileNotFoundError)
  exists-missing  os.path.exists of a missing path
  isdir           os.path.isdir of d
  stat-dir        os.stat of d
  makedirs-new    os.makedirs of a new directory below m
  listdir         os.listdir of d (10 entries)
"""
import os
import sys
import time

ROOT = sys.argv[1]
D = os.path.join(ROOT, "d")
n_made = 0


def open_missing(i):
    try:
        with open(os.path.join(ROOT, "new%d.json" % i)):
            raise SystemExit("scale_shim: a missing file opened")
    except FileNotFoundError:
        pass


def makedirs_new(i):
    global n_made
    n_made += 1
    os.makedirs(os.path.join(ROOT, "m", "x%d-%d" % (os.getpid(), n_made)))


def listdir(i):
    if len(os.listdir(D)) != 10:
        raise SystemExit("scale_shim: d does not list 10 entries")


OPS = {
    "open-missing": open_missing,
    "exists-missing": lambda i: os.path.exists(os.path.join(ROOT, "nope%d" % i)),
    "isdir": lambda i: os.path.isdir(D) or sys.exit("scale_shim: d is not a directory"),
    "stat-dir": lambda i: os.stat(D),
    "makedirs-new": makedirs_new,
    "listdir": listdir,
}

it = 0
for line in sys.stdin:
    op, _, n = line.split()
    fn = OPS[op]
    us = []
    for _ in range(int(n)):
        it += 1
        t0 = time.perf_counter_ns()
        fn(it)
        us.append((time.perf_counter_ns() - t0) / 1000)
    print(" ".join("%.2f" % u for u in us), flush=True)
