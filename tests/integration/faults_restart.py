"""faults_restart.py PATH CONTROL_PORT SERVER_PID PIDFILE CMD...: issue 13, case 3, run under
the shim through faults_proxy.py. The sequence: A (this process) reads PATH, its commit lands
but the ack is lost (proxy mode ack1_other), B (the proxy's other writer) overwrites the key
at once, then the server is killed (SIGKILL) and restarted by CMD on the same port and store
(its duplicate window is rebuilt from the messages that remain, so A's id is forgotten when B
replaced A's message). A's resend then conflicts (its reply arrives), which proves nothing.

Prints one line: "close OUTCOME other_writes=N restarted=0|1" (OUTCOME OK or the errno name).
The restarted server's pid goes to PIDFILE (the caller stops it).
"""
import errno
import os
import signal
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faults_control  # noqa: E402
import threading
import time

path, ctrl_port, server_pid, pidfile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cmd = sys.argv[5:]
port = int(cmd[cmd.index("-p") + 1])
env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}

control = faults_control.connect(ctrl_port)


def accepts():
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


result = {"restarted": 0, "other": 0}


def restarter():
    # the control connection is this thread's now: the main thread is in close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stats = control("stats")
        if "other_writes=1" in stats:
            result["other"] = 1
            break
        time.sleep(0.02)
    else:
        return
    os.kill(server_pid, signal.SIGKILL)
    while accepts():
        time.sleep(0.02)
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(pidfile, "w") as f:
        f.write(str(p.pid))
    deadline = time.monotonic() + 10
    while not accepts() and time.monotonic() < deadline:
        time.sleep(0.05)
    result["restarted"] = int(accepts())


with open(path) as f:
    n = int(f.read().split()[0])
if control("arm ack1_other") != "armed":
    sys.exit("proxy did not arm")
t = threading.Thread(target=restarter)
t.start()
outcome = "OK"
try:
    with open(path, "w") as f:
        f.write("%d A-%d" % (n + 1, os.getpid()))
except OSError as e:
    outcome = errno.errorcode.get(e.errno, str(e.errno))
t.join()
print("close %s other_writes=%d restarted=%d" % (outcome, result["other"], result["restarted"]))
