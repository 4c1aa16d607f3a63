"""mirror_stale.py MONITOR_URL STDERR_LOG KVTOOL BUCKET: under the shim with a read cache
(STATE_READ_CACHE=watch or meta), mount /state/st over prefix "st" holding d/f0..d/f9. Once
the mirror has caught up: another client (kvtool, its own connection) puts d/new, then
deletes it; after each, polls listdir and stat until they reflect it (5 s at most). Prints
one line per step: "STEP MS REQUESTS" (ms from kvtool's exit, requests the shim's connection
sent while polling: nats-server's /connz, where kvtool's closed connection no longer
counts), then the listing's names."""
import json
import os
import subprocess
import sys
import time
import urllib.request

MON, LOG, KVTOOL, BUCKET = sys.argv[1:5]
D = "/state/st/d"
ENV = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}


def sent():
    time.sleep(0.05)  # the server adds a connection's messages after it answers them
    with urllib.request.urlopen(MON + "/connz?subs=0") as r:
        return sum(c.get("in_msgs", 0) for c in json.load(r).get("connections", []))


def until(cond):
    t0 = time.time()
    while not cond():
        if time.time() - t0 > 5:
            return "never"
        time.sleep(0.0005)
    return "%.1f" % ((time.time() - t0) * 1000)


def step(name, kv_args, cond):
    subprocess.run([KVTOOL, *kv_args], env=ENV, check=True, capture_output=True)
    before = sent()
    ms = until(cond)
    print(name, ms, sent() - before, flush=True)


os.listdir(D)  # connects, starts the mirror
deadline = time.time() + 30
while "caught up" not in open(LOG).read():
    if time.time() > deadline:
        sys.exit("mirror_stale.py: the read cache never caught up")
    time.sleep(0.02)
step("put", ["put", BUCKET, "st.d/new", "x"], lambda: "new" in os.listdir(D))
print("stat", os.stat(D + "/new").st_size, flush=True)
step("del", ["del", BUCKET, "st.d/new"], lambda: "new" not in os.listdir(D))
print("exists", os.path.exists(D + "/new"), flush=True)
print("names", *sorted(os.listdir(D)), flush=True)
