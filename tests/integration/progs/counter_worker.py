"""counter_worker.py PATH N BARRIER: N read-modify-write increments of the integer in PATH.

Waits until the file BARRIER exists (so all workers start together), then for each increment
reads PATH, writes value+1, and retries the whole read-modify-write on FileExistsError (a
compare-and-set conflict reported at close). Prints "conflicts C" at the end. Knows nothing of
NATS: run it under the shim with PATH on a mount.
"""
import os
import sys
import time

path, n, barrier = sys.argv[1], int(sys.argv[2]), sys.argv[3]
deadline = time.time() + 30
while not os.path.exists(barrier):
    if time.time() > deadline:
        sys.exit("barrier never opened")
    time.sleep(0.001)

conflicts = 0
for _ in range(n):
    while True:
        try:
            with open(path) as f:
                value = int(f.read())
            with open(path, "w") as f:
                f.write(str(value + 1))
            break
        except FileExistsError:
            conflicts += 1
print("conflicts", conflicts, flush=True)
