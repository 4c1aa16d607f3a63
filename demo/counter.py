#!/usr/bin/env python3
"""counter.py PATH N: add 1 to the number stored in PATH, N times, safely alongside other copies.

A plain program: it knows nothing of NATS. Each increment reads the file, writes value + 1,
and starts over when the write raises FileExistsError (someone else changed the file since we
read it: under the asya-state shim that is a compare-and-set conflict, reported at close).
Run several copies at once on the same file and no increment is lost.
"""
import os
import sys

path, n = sys.argv[1], int(sys.argv[2])
conflicts = 0
for _ in range(n):
    while True:
        try:
            try:
                with open(path) as f:
                    value = int(f.read() or 0)
                mode = "w"
            except FileNotFoundError:
                value, mode = 0, "x"  # first writer creates it; a racing creator retries
            with open(path, mode) as f:
                f.write(str(value + 1))
            break
        except FileExistsError:
            conflicts += 1
print(f"  counter.py pid {os.getpid()}: {n} increments done, {conflicts} conflicts retried")
