"""faults_unknown.py PATH CONTROL_PORT MODES REPEAT: read-modify-write commits of a counter
through the shim while faults_proxy.py loses replies; run under the shim.

PATH holds "N TOKEN". For each mode in MODES (comma-separated), REPEAT times: read PATH, arm the
proxy, write "N+1 TOKEN'" (TOKEN' unique to this commit), close (the commit), disarm. Whether the
commit landed is then read directly from the server with kvtool (env KVTOOL, SERVER_URL, BUCKET,
KEY; LD_PRELOAD removed), never through the shim. One line per commit:
  commit I MODE OUTCOME landed=0|1 acks_dropped=A pubs_dropped=P other_writes=O
OUTCOME is OK or the errno name. The bucket is read by kvtool, so the landed flag does not
depend on the code under test.
"""
import errno
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faults_control  # noqa: E402

path, ctrl_port, modes, repeat = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
kvtool, server_url = os.environ["KVTOOL"], os.environ["SERVER_URL"]
bucket, key = os.environ["BUCKET"], os.environ["KEY"]
env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}

control = faults_control.connect(ctrl_port)


def server_value():
    out = subprocess.run([kvtool, "-s", server_url, "get", bucket, key], env=env,
                         capture_output=True, timeout=20, check=True)
    return out.stdout.decode()


i = 0
for mode in modes.split(","):
    for _ in range(repeat):
        i += 1
        with open(path) as f:
            n = int(f.read().split()[0])
        token = "%d-%d" % (os.getpid(), i)
        if control("arm " + mode) != "armed":
            sys.exit("proxy did not arm")
        outcome = "OK"
        try:
            f = open(path, "w")
            f.write("%d %s" % (n + 1, token))
            f.close()
        except OSError as e:
            outcome = errno.errorcode.get(e.errno, str(e.errno))
        stats = control("disarm")
        landed = server_value().split()[1:2] == [token]
        print("commit %d %s %s landed=%d %s" % (i, mode, outcome, landed,
                                                 " ".join(stats.split()[:3])), flush=True)
