"""faults_writer.py DIR LOG STOP [SECONDS [PAUSE]]: a long-running writer under the shim while the
server is killed and restarted.

Until the file STOP exists (or SECONDS pass), alternately:
  - writes DIR/w<i> = "v<i>-<pid>" (distinct keys); logs "ack w<i> v<i>-<pid>" after a
    successful close, "err w<i> ERRNO" after a failed one;
  - increments the counter DIR/counter ("N TOKEN", read-modify-write). A close that succeeds
    logs "inc TOKEN". A close that fails with EEXIST is retried. Any other failure leaves the
    token pending: the program reads the counter again (until a read succeeds) and, if it holds
    a pending token, that increment landed: "landed TOKEN". Every write of this program is a
    compare-and-set on a value it read, so a landed increment is seen before it can be
    overwritten: the counter equals inc + landed lines exactly.
Every log line is flushed at once, so a killed writer's log is still exact. The last line is
"done writes=W failures=F errnos=E1,E2 incs=I landed=L" (errnos: failures of both kinds).
"""
import errno
import os
import sys
import time

d, logpath, stop = sys.argv[1], sys.argv[2], sys.argv[3]
deadline = time.time() + (float(sys.argv[4]) if len(sys.argv) > 4 else 90)
pause = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0  # seconds between iterations
log = open(logpath, "w", buffering=1)
counter = os.path.join(d, "counter")
pid = os.getpid()
seen_errnos = set()
pending = set()
writes = failures = incs = landed = 0


def name(e):
    return errno.errorcode.get(e.errno, str(e.errno))


def read_counter():
    """(n, token), retrying failed reads (server down) until one succeeds."""
    while True:
        try:
            with open(counter) as f:
                n, token = f.read().split()
            return int(n), token
        except OSError as e:
            seen_errnos.add(name(e))
            if time.time() > deadline + 30:
                log.write("stuck reading the counter: %s\n" % name(e))
                sys.exit(2)
            time.sleep(0.05)


def increment(i):
    global incs, landed, failures
    attempt = 0
    while True:
        n, token = read_counter()
        if token in pending:
            pending.discard(token)
            landed += 1
            log.write("landed %s\n" % token)
            return
        attempt += 1
        mine = "%d-%d-%d" % (pid, i, attempt)
        try:
            f = open(counter, "w")
            f.write("%d %s" % (n + 1, mine))
            f.close()
            incs += 1
            log.write("inc %s\n" % mine)
            return
        except OSError as e:
            if e.errno != errno.EEXIST:
                seen_errnos.add(name(e))
                failures += 1
                pending.add(mine)


i = 0
while not os.path.exists(stop) and time.time() < deadline:
    i += 1
    key, value = "w%d" % i, "v%d-%d" % (i, pid)
    try:
        f = open(os.path.join(d, key), "w")
        f.write(value)
        f.close()
        writes += 1
        log.write("ack %s %s\n" % (key, value))
    except OSError as e:
        seen_errnos.add(name(e))
        failures += 1
        log.write("err %s %s\n" % (key, name(e)))
    increment(i)
    time.sleep(pause)
log.write("done writes=%d failures=%d errnos=%s incs=%d landed=%d\n" % (
    writes, failures, ",".join(sorted(seen_errnos)) or "-", incs, landed))
