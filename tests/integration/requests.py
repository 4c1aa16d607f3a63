"""requests.py MONITOR_URL ROOT [STDERR_LOG]: under the shim, the requests (messages the shim's
connection sends, from nats-server's /connz) each single-name operation costs, one line per
operation: "NAME COUNT". The shim's connection is the only client while it runs (the key
space is seeded before), and the first operation connects and binds first, so each count is
the operation's own. t_scale.sh runs it at two key-space sizes: the counts must be equal.

With STATE_READ_CACHE set (watch or meta), STDERR_LOG is the file the program's stderr goes
to (ASYA_STATE_LOG=info): the counts start once the read cache logged "caught up", and a
listing of a directory is counted too (served from the mirror; without it a listing is a
pass over the keys, whose flow-control replies grow with the key space)."""
import json
import os
import sys
import time
import urllib.request

MON, ROOT = sys.argv[1], sys.argv[2]


def sent():
    time.sleep(0.05)  # the server adds a read's messages to in_msgs after it answers them
    with urllib.request.urlopen(MON + "/connz?subs=0") as r:
        return sum(c.get("in_msgs", 0) for c in json.load(r).get("connections", []))


def count(name, fn):
    before = sent()
    try:
        fn()
    except OSError:
        pass
    print(name, sent() - before, flush=True)


def missing_open():
    with open(os.path.join(ROOT, "new.json")) as f:
        f.read()


def caught_up(log):
    deadline = time.time() + 60
    while time.time() < deadline:
        with open(log) as f:
            if "caught up" in f.read():
                return
        time.sleep(0.02)
    sys.exit("requests.py: the read cache never caught up")


CACHED = os.environ.get("STATE_READ_CACHE", "") != ""
os.path.exists(os.path.join(ROOT, "warm-up"))  # connects and binds (and starts the cache)
os.makedirs(os.path.join(ROOT, "d"), exist_ok=True)
if CACHED:
    caught_up(sys.argv[3])
    count("listdir", lambda: os.listdir(os.path.join(ROOT, "d")))
count("open-missing", missing_open)
count("exists-missing", lambda: os.path.exists(os.path.join(ROOT, "nope")))
count("isdir", lambda: os.path.isdir(os.path.join(ROOT, "d")))
count("stat-dir", lambda: os.stat(os.path.join(ROOT, "d")))
count("makedirs-new", lambda: os.makedirs(os.path.join(ROOT, "d", "x", "y")))
count("create-in-seen-dir", lambda: open(os.path.join(ROOT, "d", "f"), "w").close())
count("create-at-root", lambda: open(os.path.join(ROOT, "g"), "w").close())
