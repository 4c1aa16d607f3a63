"""faults_threads.py PATH N THREADS: THREADS threads of one process each make N read-modify-write
increments of the integer in PATH, released together by a barrier; a FileExistsError at close
(a compare-and-set conflict) retries the whole read-modify-write. Run under the shim (the
revision memory is per thread). Prints "conflicts C errors E".
"""
import sys
import threading

path, n, nthreads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
barrier = threading.Barrier(nthreads)
lock = threading.Lock()
totals = {"conflicts": 0, "errors": 0}


def worker():
    conflicts = errors = 0
    barrier.wait()
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
            except OSError as e:
                errors += 1
                print("# error:", e, file=sys.stderr, flush=True)
                if errors > 20:
                    return
    with lock:
        totals["conflicts"] += conflicts
        totals["errors"] += errors


threads = [threading.Thread(target=worker) for _ in range(nthreads)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("conflicts %d errors %d" % (totals["conflicts"], totals["errors"]), flush=True)
