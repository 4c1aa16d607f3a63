"""sidecar_runtime.py: a handler written for Asya's runtime (plain open, os.listdir,
os.remove, os.getxattr) runs against `asya-state serve` through StateHooks, the small client
that patches the builtins as the runtime does when ASYA_STATE_PROXY_MOUNTS is set.

Environment: SOCK, SOCK2 (two sidecars on BUCKET, prefix PREFIX), KVTOOL. The mount path
/state/cache does not exist on the local disk: every access goes to the sidecar.
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sidecar_client import Checks, StateHooks  # noqa: E402

SOCK, SOCK2 = os.environ["SOCK"], os.environ["SOCK2"]
BUCKET, PREFIX, KVTOOL = os.environ["BUCKET"], os.environ["PREFIX"], os.environ["KVTOOL"]
MOUNT = "/state/cache"
T = Checks("sidecar runtime: ")


def kv_get(key):
    p = subprocess.run([KVTOOL, "get", BUCKET, f"{PREFIX}.{key}"], capture_output=True)
    return p.stdout if p.returncode == 0 else None


# ---- the handler: nothing in it knows about HTTP or NATS -----------------------------------

def handler(payload):
    """Counts visits per user under /state/cache/users/, keeps a log, lists and cleans up."""
    user = payload["user"]
    path = f"{MOUNT}/users/{user}.json"
    try:
        with open(path) as f:
            visits = int(f.read())
    except FileNotFoundError:
        visits = 0
    with open(path, "w") as f:
        f.write(str(visits + 1))
    with open(f"{MOUNT}/log.txt", "a") as f:
        f.write(f"{user}\n")
    return {"visits": visits + 1, "users": os.listdir(f"{MOUNT}/users"),
            "version": int(os.getxattr(path, "user.asya.version"))}


def t_handler():
    with StateHooks(MOUNT, SOCK):
        r1 = handler({"user": "u1"})
        r2 = handler({"user": "u1"})
        r3 = handler({"user": "u2"})
    T.eq("handler reads, writes (visit counts)", [1, 2, 1],
         [r1["visits"], r2["visits"], r3["visits"]])
    T.eq("os.listdir of the mount directory", ["u1.json", "u2.json"], r3["users"])
    T.eq("values stored in NATS (kvtool)", (b"2", b"1", b"u1\nu1\nu2\n"),
         (kv_get("users/u1.json"), kv_get("users/u2.json"), kv_get("log.txt")))
    rev = subprocess.run([KVTOOL, "rev", BUCKET, f"{PREFIX}.users/u1.json"],
                         capture_output=True).stdout.strip()
    T.eq("os.getxattr user.asya.version is the key's revision", int(rev), r2["version"])


def t_fs_calls():
    with StateHooks(MOUNT, SOCK):
        st = os.stat(f"{MOUNT}/users/u1.json")
        dst = os.stat(f"{MOUNT}/users")
        root = os.listdir(MOUNT)
        os.makedirs(f"{MOUNT}/made/deeper", exist_ok=True)
        made = os.listdir(f"{MOUNT}/made")
        attrs = os.listxattr(f"{MOUNT}/users/u1.json")
        try:
            os.setxattr(f"{MOUNT}/users/u1.json", "user.asya.version", b"1")
            perm = "no error"
        except PermissionError:
            perm = "PermissionError"
        os.remove(f"{MOUNT}/users/u2.json")
        after = os.listdir(f"{MOUNT}/users")
        try:
            open(f"{MOUNT}/users/u2.json").read()
            missing = "read it"
        except FileNotFoundError:
            missing = "FileNotFoundError"
        try:
            os.remove(f"{MOUNT}/users/u2.json")
            again = "no error"
        except FileNotFoundError:
            again = "FileNotFoundError"
    T.eq("os.stat of a file: regular, size", (True, 1), (st.st_mode & 0o170000 == 0o100000,
                                                        st.st_size))
    T.true("os.stat of a directory: S_IFDIR", dst.st_mode & 0o170000 == 0o040000)
    T.true("os.listdir of the mount root", "users" in root and "log.txt" in root, str(root))
    T.eq("os.makedirs then listdir", ["deeper"], made)
    T.eq("os.listxattr", ["user.asya.version"], attrs)
    T.eq("os.setxattr of the version: PermissionError", "PermissionError", perm)
    T.eq("os.remove, then listdir", ["u1.json"], after)
    T.eq("open of a removed file: FileNotFoundError", "FileNotFoundError", missing)
    T.eq("os.remove of a removed file: FileNotFoundError", "FileNotFoundError", again)
    T.eq("removed in NATS (kvtool)", None, kv_get("users/u2.json"))


def t_conflict():
    """Two actors (two sidecars) read the same counter; the slower one's write conflicts."""
    a, b = StateHooks(MOUNT, SOCK), StateHooks(MOUNT, SOCK2)
    with a:
        with open(f"{MOUNT}/counter", "w") as f:
            f.write("10")
        with open(f"{MOUNT}/counter") as f:
            va = int(f.read())                     # actor A read revision r
    with b:
        with open(f"{MOUNT}/counter") as f:
            vb = int(f.read())
        with open(f"{MOUNT}/counter", "w") as f:  # actor B wrote first
            f.write(str(vb + 5))
    outcome = "no error"
    with a:
        try:
            with open(f"{MOUNT}/counter", "w") as f:
                f.write(str(va + 1))
        except FileExistsError:
            outcome = "FileExistsError"
        # Asya's requeue: the handler runs again from a fresh read and wins.
        with open(f"{MOUNT}/counter") as f:
            v = int(f.read())
        with open(f"{MOUNT}/counter", "w") as f:
            f.write(str(v + 1))
    T.eq("the stale writer gets FileExistsError", "FileExistsError", outcome)
    T.eq("the retry from a fresh read lands: 10 +5 +1", b"16", kv_get("counter"))
    with a:
        try:
            with open(f"{MOUNT}/counter", "x") as f:
                f.write("new")
            excl = "no error"
        except FileExistsError:
            excl = "FileExistsError"
        with open(f"{MOUNT}/brand_new", "x") as f:
            f.write("created")
    T.eq("open(..., 'x') of an existing key: FileExistsError", "FileExistsError", excl)
    T.eq("open(..., 'x') of a new key creates it", b"created", kv_get("brand_new"))


def t_local_untouched():
    with StateHooks(MOUNT, SOCK):
        with open("/proc/self/status") as f:
            local = f.readline()
    T.true("paths outside the mount go to the local disk", local.startswith("Name:"), local)


for name, fn in list(globals().items()):
    if name.startswith("t_") and callable(fn):
        T.run(name, fn)
sys.exit(1 if T.failures else 0)
