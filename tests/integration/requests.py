"""requests.py MONITOR_URL ROOT: under the shim, the requests (messages the shim's connection
sends, from nats-server's /connz) each single-name operation costs, one line per operation:
"NAME COUNT". The shim's connection is the only client while it runs (the key space is
seeded before), and the first operation connects and binds first, so each count is the
operation's own. t_scale.sh runs it at two key-space sizes: the counts must be equal."""
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


os.path.exists(os.path.join(ROOT, "warm-up"))  # connects and binds
os.makedirs(os.path.join(ROOT, "d"), exist_ok=True)
count("open-missing", missing_open)
count("exists-missing", lambda: os.path.exists(os.path.join(ROOT, "nope")))
count("isdir", lambda: os.path.isdir(os.path.join(ROOT, "d")))
count("stat-dir", lambda: os.stat(os.path.join(ROOT, "d")))
count("makedirs-new", lambda: os.makedirs(os.path.join(ROOT, "d", "x", "y")))
count("create-in-seen-dir", lambda: open(os.path.join(ROOT, "d", "f"), "w").close())
count("create-at-root", lambda: open(os.path.join(ROOT, "g"), "w").close())
