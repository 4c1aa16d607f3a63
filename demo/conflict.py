#!/usr/bin/env python3
"""conflict.py PATH: shows a compare-and-set conflict with another writer.

1. We read PATH.  2. Another program (a plain `sh -c 'echo ... > PATH'`) rewrites it.
3. We write our version: close raises FileExistsError and the other writer's value is kept.
Exits 0 when exactly that happened. A plain program: it knows nothing of NATS.
"""
import errno
import subprocess
import sys

path = sys.argv[1]
with open(path, "w") as f:
    f.write("first version")
with open(path) as f:
    print(f"  we read:            {f.read()!r}")

subprocess.run(["sh", "-c", f"echo -n 'changed by another writer' > '{path}'"], check=True)
print("  another writer wrote 'changed by another writer'")

try:
    with open(path, "w") as f:
        f.write("our stale update")
    print("  our write succeeded: the conflict was NOT detected")
    sys.exit(1)
except FileExistsError as e:
    print(f"  our write failed:   FileExistsError (errno {errno.errorcode[e.errno]})")

with open(path) as f:
    kept = f.read()
print(f"  the file now holds: {kept!r}")
sys.exit(0 if kept == "changed by another writer" else 1)
