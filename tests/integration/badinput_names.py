"""badinput_names.py MOUNT BUCKET PREFIX: hostile file names through the shim (run under it).

For every name: the path is normalised lexically as the contract says ('//', '.', '..'), the
key is computed here from the contract's escaping rule (an implementation independent of kv/),
and then either
  - the key is at most 1024 bytes: write, the parent's listing shows the last segment
    unchanged, the value reads back, and kvtool (not under the shim) finds the value under
    the expected key; or
  - the key is longer, or a segment is longer than NAME_MAX (255: no listing could give it
    back, and a local file system refuses it too): the write fails with ENAMETOOLONG;
and in both cases the next operation in this process (write + read of a plain name) works, so
the connection survived. One "ok - " / "not ok - " line per name, plus one for key validity.
"""
import errno
import os
import re
import subprocess
import sys

MOUNT, BUCKET, PREFIX = os.fsencode(sys.argv[1]), sys.argv[2], sys.argv[3]
KVTOOL = os.environ["KVTOOL"]
ENV = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
VALID_KEY = re.compile(rb"^[-/_=.A-Za-z0-9]+$")


def normalise(name):
    out = []
    for seg in name.split(b"/"):
        if seg in (b"", b"."):
            continue
        if seg == b"..":
            out.pop()
        else:
            out.append(seg)
    return b"/".join(out)


def escape(rel):
    plain = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_/-")
    o = bytearray()
    for i, c in enumerate(rel):
        if c in plain:
            o.append(c)
        elif c == ord(".") and 0 < i < len(rel) - 1 and rel[i - 1] != ord("."):
            o.append(c)
        else:
            o += b"=%02X" % c
    return bytes(o)


def key_of(rel):
    return (PREFIX.encode() + b"." if PREFIX else b"") + escape(rel)


NAME_MAX = os.pathconf("/", "PC_NAME_MAX")


def too_long(rel, key):
    return len(key) > 1024 or any(len(seg) > NAME_MAX for seg in rel.split(b"/"))


def kvtool(*args):
    return subprocess.run([KVTOOL, *args], env=ENV, capture_output=True, timeout=30)


NAMES = [
    b"e1//b", b"e2/./b", b"./e3", b"e4/../c4", b"e5/x/../../c5", b"e6///.//y",
    b".lead", b"trail.", b"..both..", b"...", b".a.", b"a..b", b"-dash", b"=", b"a=2Eb",
    b"sp ace", b" lead space", b"trail space ", b"star*", b"*", b"gt>", b">", b"$KV.x",
    b"tab\tnl\nx", b"ctl\x01\x02\x1b\x7f", b"\x7f", b"caf\xc3\xa9", b"bad\xff\xfeutf8",
    b"lone\x80", b"per%cent", b"colon:semi;", b"back\\slash", b"q\"'`",
    b"s" * NAME_MAX, b"t" * (NAME_MAX + 1), b"y" * 300, b" " * 300, b"=" * 250, b"*" * 400,
    (b"%" * 200 + b"/") * 3 + b"z", b"d/" * 2499 + b"x", b"x" * 5000,
]

probe = MOUNT + b"/badinput_probe"
failures = 0
for n, name in enumerate(NAMES):
    label = "name %r" % (name if len(name) <= 24 else name[:12] + b"...(%d bytes)" % len(name))
    rel = normalise(name)
    key = key_of(rel)
    path = MOUNT + b"/" + name
    value = b"value %d of " % n + name[:40]
    why = None
    try:
        parent_rel = rel.rpartition(b"/")[0]
        if parent_rel and not too_long(rel, key):  # as on a local disk: the directory first
            os.makedirs(MOUNT + b"/" + parent_rel, exist_ok=True)
        with open(path, "wb") as f:
            f.write(value)
        if too_long(rel, key):
            why = "accepted although its key has %d bytes" % len(key)
        else:
            parent, _, last = (b"/" + rel).rpartition(b"/")
            listing = os.listdir(MOUNT + parent)
            if last not in listing:
                why = "listing of %r lacks %r: %r" % (parent, last, listing[:8])
            elif open(path, "rb").read() != value:
                why = "read back a different value"
            else:
                r = kvtool("get", BUCKET, key.decode())
                if r.returncode != 0 or r.stdout != value:
                    why = "kvtool get %r: %r %r" % (key[:60], r.stdout[:60], r.stderr[:100])
                elif not VALID_KEY.match(key) or key.startswith(b".") or key.endswith(b".") \
                        or b".." in key:
                    why = "the key %r is not a valid NATS KV key" % key[:60]
    except OSError as e:
        if too_long(rel, key) and e.errno == errno.ENAMETOOLONG:
            pass
        else:
            why = "%s (key %d bytes)" % (e, len(key))
    try:
        with open(probe, "wb") as f:
            f.write(b"probe %d" % n)
        if open(probe, "rb").read() != b"probe %d" % n:
            why = (why or "") + "; the next operation read a wrong value"
    except OSError as e:
        why = (why or "") + "; the next operation failed: %s" % e
    outcome = "ENAMETOOLONG" if too_long(rel, key) else "round trip (key %d bytes)" % len(key)
    if why:
        failures += 1
        print("not ok - badinput: %s: %s" % (label, why))
    else:
        print("ok - badinput: %s: %s, next operation works" % (label, outcome))

r = kvtool("keys", BUCKET)
keys = r.stdout.split()
bad = [k for k in keys if not VALID_KEY.match(k) or k.startswith(b".") or k.endswith(b".")
       or b".." in k or len(k) > 1024]
if r.returncode == 0 and keys and not bad:
    print("ok - badinput: kvtool lists %d keys, every one a valid NATS key of <= 1024 bytes"
          % len(keys))
else:
    print("not ok - badinput: kvtool keys: rc %d, invalid: %r" % (r.returncode, bad[:5]))
sys.exit(1 if failures else 0)
