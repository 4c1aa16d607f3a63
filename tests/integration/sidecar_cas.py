"""sidecar_cas.py: no lost update through one sidecar (issue 13). Run by t_sidecar.sh with
SOCK (a serve socket) in the environment. Prints ok/not ok lines.
  - 8 clients x 50 increments, each a GET then a PUT (fresh connection each, as Asya's
    runtime), retried on 409: every 204 is counted, and the counter ends at 400;
  - A GET, B GET, A PUT (204), B PUT: 409, the key keeps A's value;
  - If-Match: the current revision updates (204), a stale one answers 412 and writes nothing."""
import json
import os
import threading

from sidecar_client import request

SOCK = os.environ["SOCK"]
failures = 0


def check(name, want, got):
    global failures
    if want == got:
        print(f"ok - sidecar cas: {name}")
    else:
        failures += 1
        print(f"not ok - sidecar cas: {name}: expected {want!r}, got {got!r}")


def put(key, body, headers=None):
    return request(SOCK, "PUT", "/keys/" + key, body=body, headers=headers)[0]


def get(key):
    st, _, body = request(SOCK, "GET", "/keys/" + key)
    return st, body


put("cas/ctr", b"0")
acked = [0]
lock = threading.Lock()


def client():
    for _ in range(50):
        while True:
            st, body = get("cas/ctr")
            if put("cas/ctr", str(int(body) + 1).encode()) == 204:
                with lock:
                    acked[0] += 1
                break


ts = [threading.Thread(target=client) for _ in range(8)]
for t in ts:
    t.start()
for t in ts:
    t.join()
check("8 clients x 50 GET+PUT increments: none lost", "400 400",
      f"{acked[0]} {get('cas/ctr')[1].decode()}")

put("cas/ab", b"init")
get("cas/ab")  # A
get("cas/ab")  # B
a = put("cas/ab", b"A")
b = put("cas/ab", b"B")
check("A GET, B GET, A PUT, B PUT: 204 then 409, A's value kept", "204 409 A",
      f"{a} {b} {get('cas/ab')[1].decode()}")

put("cas/im", b"v1")
st, _, body = request(SOCK, "GET", "/meta/cas/im?attr=version")
rev = json.loads(body).get("value") if st == 200 and body.startswith(b"{") else body.decode()
put("cas/im", b"v2")  # someone else moves it on
stale = put("cas/im", b"stale", {"If-Match": str(rev)})
st, _, body = request(SOCK, "GET", "/meta/cas/im?attr=version")
cur = json.loads(body).get("value") if st == 200 and body.startswith(b"{") else body.decode()
fresh = put("cas/im", b"v3", {"If-Match": f'"{cur}"'})
check("If-Match: a stale revision answers 412 and writes nothing; the current one 204",
      "412 204 v3", f"{stale} {fresh} {get('cas/im')[1].decode()}")
raise SystemExit(1 if failures else 0)
