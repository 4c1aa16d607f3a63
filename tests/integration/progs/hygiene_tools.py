#!/usr/bin/env python3
"""hygiene_tools.py asan|memcheck BUILD: the integration half of `make asan` / `make memcheck`.

Starts a private nats-server (loopback, temporary store), creates a bucket with BUILD's
kvtool, then runs a few programs under the shim built in BUILD and checks every one finished
as expected with a clean tool report:

  asan      the C program tests/integration/progs/hygiene_proc.c (built with the sanitizers),
            cat, bash, Python (detect_leaks=0: not ours) and `asya-state cat/ls`, with
            LD_PRELOAD="libasan.so BUILD/libasya-state-nats-kv.so" for the preloaded ones.
  memcheck  valgrind memcheck of hygiene_proc (state and leak modes) under the shim, of the
            demo's counter logic as a C program does it, and of `asya-state serve` answering
            a few requests (then SIGTERM): 0 errors, definitely lost 0, with the checked-in
            suppressions tests/integration/progs/hygiene_valgrind.supp (third-party code only).

Prints "ok - NAME" / "not ok - NAME: reason" per program and a last line
"<tool>: N passed, N failed"; exit status 1 when anything failed. Stops its server.
"""
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
PROGS = os.path.join(ROOT, "tests", "integration", "progs")
SUPP = os.path.join(PROGS, "hygiene_valgrind.supp")
results = []


def report(name, good, why=""):
    results.append(good)
    print(f"ok - {name}" if good else f"not ok - {name}: {why[:800]}".replace("\n", " | "),
          flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run(argv, env, timeout=300, stdin=None):
    p = subprocess.run(argv, env=env, stdin=stdin, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=60)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(self.unix_path)


def request(sock, method, url, body=None, headers=None):
    c = UnixHTTP(sock)
    c.request(method, url, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("asan", "memcheck"):
        print("usage: hygiene_tools.py asan|memcheck BUILD", file=sys.stderr)
        return 2
    tool, build = sys.argv[1], os.path.abspath(sys.argv[2])
    shim = os.path.join(build, "libasya-state-nats-kv.so")
    kvtool = os.path.join(build, "tools", "kvtool")
    asya = os.path.join(build, "asya-state")
    tmp = tempfile.mkdtemp(prefix=f"asya-{tool}.")
    server = None
    try:
        port = free_port()
        server = subprocess.Popen(
            ["nats-server", "-a", "127.0.0.1", "-p", str(port), "-js", "-sd",
             os.path.join(tmp, "js")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"nats://127.0.0.1:{port}"
        base = dict(os.environ, NATS_URL=url, NATS_KV_BUCKET="tools", STATE_MOUNT="/state")
        base.pop("LD_PRELOAD", None)
        quiet = dict(base, ASAN_OPTIONS="detect_leaks=0")
        rc, out, err = run([kvtool, "-s", url, "--wait", "bucket-add", "tools"], quiet, 60)
        if rc != 0:
            report(f"{tool}: nats-server and bucket", False, err)
            return 1
        run([kvtool, "-s", url, "put", "tools", "seed", "seed value\n"], quiet, 60)
        run([kvtool, "-s", url, "put", "tools", "leakkey", "leak\n"], quiet, 60)

        cflags = ["-std=gnu11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-pthread"]
        if tool == "asan":
            cflags += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
        hp = os.path.join(tmp, "hygiene_proc")
        rc, out, err = run(["gcc", *cflags, "-o", hp, os.path.join(PROGS, "hygiene_proc.c")],
                           base, 120)
        if rc != 0:
            report(f"{tool}: hygiene_proc.c compiles", False, err)
            return 1
        if tool == "asan":
            return asan(base, shim, asya, hp)
        return memcheck(base, shim, asya, hp, tmp)
    finally:
        if server:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(tmp, ignore_errors=True)
        passed = sum(1 for r in results if r)
        print(f"{tool}: {passed} passed, {len(results) - passed} failed", flush=True)


SAN_ERR = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:")


def asan(base, shim, asya, hp):
    libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                             text=True).stdout.strip()
    pre = f"{libasan} {shim}"
    opts = "abort_on_error=0:halt_on_error=1:exitcode=99:detect_leaks=0"
    env = dict(base, LD_PRELOAD=pre, ASAN_OPTIONS=opts,
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    py = os.path.realpath(sys.executable)
    cases = [
        ("hygiene_proc state (C, sanitized, shim preloaded)",
         [hp, "state", "/state/asan_c", "default"], 0, "cmp ops read=-2 write=0 reread=0"),
        ("hygiene_proc leak 1000 cycles", [hp, "leak", "/state/leakkey", "1000", "/state/nope"],
         0, "errors=0"),
        ("cat of a state file", ["cat", "/state/seed"], 0, "seed value"),
        ("bash redirections and ls", ["bash", "-c",
         "echo from-bash > /state/asan_sh && cat /state/asan_sh && ls /state && "
         "mkdir /state/d && mv /state/asan_sh /state/d/x && cat /state/d/x && rm /state/d/x"],
         0, "from-bash"),
        ("Python read-modify-write, listdir, xattr", [py, "-c",
         "import os\n"
         "for i in range(20):\n"
         "    p='/state/asan_py'\n"
         "    try: n=int(open(p).read())\n"
         "    except FileNotFoundError: n=0\n"
         "    open(p,'w').write(str(n+1))\n"
         "print(open(p).read(), sorted(os.listdir('/state'))[:2],"
         " os.getxattr(p,'user.asya.version') != b'')"], 0, "20 "),
        ("in-memory files: every behaviour of memfile.py",
         [py, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "memfile.py"), "/state"], 0, "large|(True, 614400)"),
    ]
    for name, argv, want_rc, want in cases:
        rc, out, err = run(argv, env, 300)
        good = rc == want_rc and want in out and not SAN_ERR.search(err)
        report(f"asan: {name}", good, f"rc {rc}, stdout {out[-300:]!r}, stderr {err[-600:]}")
    # asya-state itself is ours; LeakSanitizer stays off all the same: a kv mount lives as
    # long as the process by design (kv_ops has no unmount: one binding per bucket, SPEC
    # "Configuration"), and ls/rev exit holding theirs (38 bytes). memcheck's serve run
    # checks "definitely lost" for the long-running command.
    cli = dict(base, ASAN_OPTIONS="halt_on_error=1:exitcode=99:detect_leaks=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    for name, argv, want in [("asya-state cat", [asya, "cat", "/state/seed"], "seed value"),
                             ("asya-state ls", [asya, "ls", "/state"], "seed"),
                             ("asya-state rev", [asya, "rev", "/state/seed"], "1")]:
        rc, out, err = run(argv, cli, 120)
        report(f"asan: {name}", rc == 0 and want in out and
               not SAN_ERR.search(err), f"rc {rc}, stdout {out[-200:]!r}, stderr {err[-600:]}")
    return 0 if all(results) else 1


def valgrind(args, leaks=True):
    v = ["valgrind", "--tool=memcheck", "--error-exitcode=99", f"--suppressions={SUPP}",
         "--num-callers=30", "--track-origins=no"]
    if leaks:
        v += ["--leak-check=full", "--show-leak-kinds=definite",
              "--errors-for-leak-kinds=definite"]
    return v + args


def vg_summary(err):
    errs = re.findall(r"ERROR SUMMARY: (\d+) errors", err)
    lost = re.findall(r"definitely lost: ([\d,]+) bytes", err)
    return (int(errs[-1]) if errs else -1), (lost[-1] if lost else "0")


def memcheck(base, shim, asya, hp, tmp):
    env = dict(base, LD_PRELOAD=shim)
    for name, argv, want in [
            ("hygiene_proc state under the shim", [hp, "state", "/state/vg_c", "default"],
             "cmp ops read=-2 write=0 reread=0"),
            ("hygiene_proc leak 200 cycles under the shim",
             [hp, "leak", "/state/leakkey", "200", "/state/nope"], "errors=0")]:
        rc, out, err = run(valgrind(["--trace-children=no", *argv]), env, 600)
        n, lost = vg_summary(err)
        report(f"memcheck: {name}: {n} errors, definitely lost {lost} bytes",
               rc == 0 and n == 0 and want in out, f"rc {rc}, stdout {out[-200:]!r}, "
               f"stderr {err[-1500:]}")

    sock = os.path.join(tmp, "serve.sock")
    senv = dict(base, CONNECTOR_SOCKET=sock)
    errf = open(os.path.join(tmp, "serve.err"), "w+")
    p = subprocess.Popen(valgrind([asya, "serve"]), env=senv, stdout=subprocess.DEVNULL,
                         stderr=errf)
    got = []
    try:
        deadline = time.time() + 120
        while not os.path.exists(sock) and time.time() < deadline and p.poll() is None:
            time.sleep(0.2)
        got.append(request(sock, "GET", "/healthz")[0])
        got.append(request(sock, "PUT", "/keys/vg/a.json", b'{"n": 1}')[0])
        got.append(request(sock, "GET", "/keys/vg/a.json")[0])
        got.append(request(sock, "PUT", "/keys/vg/a.json", b'{"n": 2}',
                           {"If-None-Match": "*"})[0])
        got.append(request(sock, "HEAD", "/keys/vg/a.json")[0])
        got.append(request(sock, "GET", "/keys/?prefix=vg/&delimiter=/")[0])
        got.append(request(sock, "GET", "/meta/vg/a.json?attr=version")[0])
        got.append(request(sock, "DELETE", "/keys/vg/a.json")[0])
        got.append(request(sock, "GET", "/keys/vg/a.json")[0])
    except Exception as e:  # reported below with valgrind's output
        got.append(repr(e))
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(120)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
    errf.seek(0)
    err = errf.read()
    errf.close()
    n, lost = vg_summary(err)
    want = [200, 204, 200, 409, 204, 200, 200, 204, 404]  # HEAD: 204, as Asya's server
    report(f"memcheck: asya-state serve, {len(want)} requests then SIGTERM: {n} errors, "
           f"definitely lost {lost} bytes", rc == 0 and n == 0 and got == want,
           f"rc {rc}, statuses {got} (want {want}), stderr {err[-1500:]}")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
