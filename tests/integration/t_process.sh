#!/usr/bin/env bash
# t_process.sh: ownership and locks across processes: posix_spawn keeps the parent's
# close-on-exec mount files, a fork while other threads work in the shim never hangs the
# child, and a successful hook leaves errno as the program had it.
. "$(dirname "$0")/lib.sh"

B=$(new_bucket)
export NATS_KV_BUCKET=$B STATE_MOUNT=/state/proc STATE_PREFIX=pr
PY=$(python3 -c 'import sys; print(sys.executable)')
run() { timeout -k 5 "${T:-60}" env LD_PRELOAD="$SHIM" "$@"; }

out=$(run "$PY" - <<'PY' 2>&1
import os
f = open("/state/proc/spawned", "w")          # O_CLOEXEC, as Python opens everything
f.write("kept across posix_spawn")
pid = os.posix_spawn("/bin/true", ["true"], dict(os.environ))
os.waitpid(pid, 0)
f.close()
print("closed")
PY
)
expect_eq "posix_spawn: the parent's close-on-exec file is still committed at its close" \
    "closed|kept across posix_spawn" "$out|$($KVTOOL get "$B" pr.spawned 2>&1)"

out=$(T=90 run "$PY" - <<'PY' 2>&1
import os, threading
stop = False
def churn(n):
    i = 0
    while not stop:
        with open(f"/state/proc/t{n}", "w") as f:   # fd table, revision memory, commits
            f.write(str(i))
        fd = os.open("/etc/hostname", os.O_RDONLY)
        d = os.dup(fd)                                # the fd table's lock, foreign fds
        os.close(d)
        os.close(fd)
        i += 1
threads = [threading.Thread(target=churn, args=(n,)) for n in range(3)]
for t in threads: t.start()
ok = 0
for i in range(60):
    pid = os.fork()
    if pid == 0:
        os.chdir("/tmp")
        fd = os.open("../state/proc/child%d" % i, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.write(fd, b"c"); os.close(fd)
        os._exit(0)
    _, st = os.waitpid(pid, 0)
    ok += st == 0
stop = True
for t in threads: t.join()
print(ok)
PY
)
expect_eq "fork while 3 threads work in the shim: 60 children finish (none inherits a held lock)" \
    "60" "$out"
expect_eq "... and each child's file landed" "60" \
    "$($KVTOOL keys "$B" | grep -c '^pr\.child')"

cat >"$TMP/errno.c" <<'C'
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
int main(void)
{
    int bad = 0;
    errno = 4242;
    int fd = open("/state/proc/e", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    bad += fd < 0 || errno != 4242;
    bad += write(fd, "e", 1) != 1;
    errno = 4242;
    bad += close(fd) != 0 || errno != 4242;
    errno = 4242;
    fd = open("/state/proc/e", O_RDONLY);
    bad += fd < 0 || errno != 4242;
    errno = 4242;
    bad += close(fd) != 0 || errno != 4242;
    printf("%d\n", bad);
    return 0;
}
C
cc -o "$TMP/errno" "$TMP/errno.c"
expect_eq "successful open and close (commit included) leave errno as the program set it" \
    "0" "$(run "$TMP/errno" 2>&1)"

out=$(run "$PY" - <<'PY' 2>&1
import os
p = "/state/proc/identity"
open(p, "w").write("same file")
with open(p) as f:
    a, b = os.fstat(f.fileno()), os.stat(p)
    keys = ("st_dev", "st_ino", "st_mode", "st_uid", "st_gid", "st_size", "st_mtime_ns")
    diff = [k for k in keys if getattr(a, k) != getattr(b, k)]
    print("agree" if not diff else "differ: %s" % diff)
d = os.open("/state/proc", os.O_RDONLY | os.O_DIRECTORY)
a, b = os.fstat(d), os.stat("/state/proc")
print("dir agree" if (a.st_dev, a.st_ino, a.st_mode, a.st_uid) ==
      (b.st_dev, b.st_ino, b.st_mode, b.st_uid) else "dir differ")
os.close(d)
PY
)
expect_eq "fstat of an open mount file and of a mount directory agree with stat of the path" \
    "agree
dir agree" "$out"

# ---- exec of a program that cannot adopt the mount files it inherits ------------------------
# A statically linked program (Go's, /sbin/ldconfig) or one whose environment dropped
# LD_PRELOAD (env -i) never loads the shim: the files this process owns are committed before
# the exec, with one warning each; what that program writes is lost, and says so.
LDC=$(command -v ldconfig || echo /sbin/ldconfig)
run bash -c "{ echo before; exec $LDC -p; } > /state/proc/static.txt" >/dev/null \
    2>"$TMP/static.err"
expect_eq "exec of a statically linked program: what was written before is committed" \
    "before" "$($KVTOOL get "$B" pr.static.txt 2>&1)"
expect_eq "exec of a statically linked program: one warning naming the file and why" 1 \
    "$(grep -c "static.txt: $LDC will not adopt it (it is statically linked): committed" \
        "$TMP/static.err")"
run bash -c 'cd /state/proc; { echo before; exec env -i /bin/echo after; } > envi.txt 7>&1 8</state/proc' \
    2>"$TMP/envi.err"
expect_eq "exec with LD_PRELOAD cleared (env -i): committed before, one warning (two descriptors, a directory)" "before|1|0" \
    "$($KVTOOL get "$B" pr.envi.txt 2>&1)|$(grep -c "envi.txt: /bin/echo will not adopt it (its environment's LD_PRELOAD does not name" "$TMP/envi.err")|$(grep -vc "envi.txt" "$TMP/envi.err")"
run bash -c '{ echo before; exec /bin/echo after; } > /state/proc/dyn.txt' 2>"$TMP/dyn.err"
expect_eq "exec of a dynamic program with the shim: it adopts and commits, no warning" \
    "before
after|0" "$($KVTOOL get "$B" pr.dyn.txt 2>&1)|$(grep -c "will not adopt" "$TMP/dyn.err")"

# ---- a child that opens by name a file its parent has open ---------------------------------
# bash holds `exec 3>>f` (or `exec 3<f`) while a child opens f by name: as on a local disk,
# what the child writes lands in the file the shell commits (or, read-only there, in the
# child's own). Each script runs on a local directory and on a mount; the answers must match.
cat >"$TMP/inherit.sh" <<SH
L=\$D/log; : > \$L; exec 3>>\$L; echo p1 >&3
"$PY" -c 'import sys; open(sys.argv[1], "a").write("py\\n")' \$L
/bin/echo c2 >> \$L; echo p2 >&3; exec 3>&-
R=\$D/ro; echo a > \$R; exec 3<\$R
"$PY" -c 'import sys; open(sys.argv[1], "w").write("new\\n")' \$R; exec 3<&-
cat \$L \$R | paste -sd,
SH
mkdir -p "$TMP/inh"
expect_eq "a child opens by name what bash holds open (>> and <): the local disk's answer" \
    "$(D="$TMP/inh" bash "$TMP/inherit.sh" 2>&1)" \
    "$(run env D=/state/proc bash "$TMP/inherit.sh" 2>&1)"
expect_eq "... the bucket has both files so (kvtool)" "p1,py,c2,p2|new" \
    "$($KVTOOL get "$B" pr.log | paste -sd,)|$($KVTOOL get "$B" pr.ro)"

# ---- a child that writes on after its parent's last close --------------------------------
# The owner commits at its last close; a child that inherited the file may still be writing
# (Popen(stdout=f) inside a `with`, waited for after it). Such a file is committed again once
# no child holds it (after a wait reaps one) or at the owner's exit.
out=$(run "$PY" - <<'PY' 2>&1
import os, subprocess, time
with open("/state/proc/popen.txt", "w") as f:
    f.write("parent\n")
    f.flush()
    p = subprocess.Popen(["sh", "-c", "sleep 0.3; echo from-child"], stdout=f)
p.wait()
print(repr(open("/state/proc/popen.txt").read()))
f = open("/state/proc/fork.txt", "w")
f.write("parent,")
f.flush()
pid = os.fork()
if pid == 0:
    time.sleep(0.3)
    f.write("child,")
    f.flush()
    os._exit(0)
f.close()
os.waitpid(pid, 0)
print(repr(open("/state/proc/fork.txt").read()))
PY
)
expect_eq "Popen(stdout=f), f closed before the child is done: after wait() the file has both" \
    "'parent\nfrom-child\n'
'parent,child,'" "$out"
expect_eq "... and so does the bucket (kvtool)" "parent
from-child|parent,child," \
    "$($KVTOOL get "$B" pr.popen.txt 2>&1)|$($KVTOOL get "$B" pr.fork.txt 2>&1)"
# ... renamed or unlinked before the wait, a worker forked after the close, a SIGCHLD
# handler that reaps (bash does): as on a local disk, and nothing on stderr.
out=$(run "$PY" - <<'PY' 2>"$TMP/held.err"
import os, signal, subprocess, time
def child(f, line):
    return subprocess.Popen(["sh", "-c", "sleep 0.3; echo " + line], stdout=f)
with open("/state/proc/h-tmp.txt", "w") as f:
    f.write("parent\n"); f.flush(); p = child(f, "renamed")
os.rename("/state/proc/h-tmp.txt", "/state/proc/h-final.txt")
p.wait()
with open("/state/proc/h-gone.txt", "w") as f:
    f.write("parent\n"); f.flush(); p = child(f, "unlinked")
os.unlink("/state/proc/h-gone.txt")
p.wait()
with open("/state/proc/h-pool.txt", "w") as f:
    f.write("parent\n"); f.flush(); p = child(f, "pool")
worker = os.fork()
if worker == 0:
    time.sleep(2); os._exit(0)
p.wait()
print(repr(open("/state/proc/h-final.txt").read()), os.path.exists("/state/proc/h-tmp.txt"),
      os.path.exists("/state/proc/h-gone.txt"), repr(open("/state/proc/h-pool.txt").read()))
reaped = []
signal.signal(signal.SIGCHLD, lambda *_: reaped.append(os.waitpid(-1, os.WNOHANG)))
with open("/state/proc/h-sig.txt", "w") as f:
    f.write("parent\n"); f.flush(); p = child(f, "signal")
while not reaped:
    time.sleep(0.05)
print(repr(open("/state/proc/h-sig.txt").read()))
os.kill(worker, signal.SIGKILL)
PY
)
expect_eq "a held file renamed before the wait, one unlinked, a worker forked after the close" \
    "'parent\nrenamed\n' False False 'parent\npool\n'
'parent\nsignal\n'" "$out"
expect_eq "... the bucket has them (kvtool)" "parent renamed|parent signal|" \
    "$($KVTOOL get "$B" pr.h-final.txt | paste -sd' ')|$($KVTOOL get "$B" pr.h-sig.txt | paste -sd' ')|$($KVTOOL get "$B" pr.h-gone.txt 2>/dev/null)"
check "... and nothing on stderr" test ! -s "$TMP/held.err"
# A C handler that reaps with waitpid (as bash's does) while the program is in malloc: the
# commit cannot run there (it allocates and locks); it runs at the next mount path the
# program names. Before, such a program hung within a few rounds.
cat >"$TMP/sigchld.c" <<'C'
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static volatile sig_atomic_t reaped;
static void on_child(int s)
{
    (void)s;
    while (waitpid(-1, NULL, WNOHANG) > 0)
        reaped++;
}
int main(void)
{
    signal(SIGCHLD, on_child);
    for (int round = 0; round < 10; round++) {
        char p[64];
        snprintf(p, sizeof p, "/state/proc/sig%d.txt", round);
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || write(fd, "parent\n", 7) != 7)
            return 1;
        if (fork() == 0) {
            usleep(50000);
            _exit(write(fd, "child\n", 6) != 6);
        }
        close(fd); /* the child still has it */
        int before = reaped;
        void *v[64] = { 0 };
        for (unsigned long i = 0; reaped == before; i++) { /* malloc all the while */
            free(v[i % 64]);
            v[i % 64] = malloc(16 + (i * 7919) % 4000);
        }
        for (int k = 0; k < 64; k++)
            free(v[k]);
    }
    FILE *f = fopen("/state/proc/sig9.txt", "r"); /* names a mount path: commits */
    char line[16] = "";
    while (f && fgets(line, sizeof line, f)) {}
    printf("%s", line);
    return 0;
}
C
cc -o "$TMP/sigchld" "$TMP/sigchld.c"
expect_eq "a SIGCHLD handler reaps with waitpid while the program allocates: no hang, both lines" \
    "child" "$(run "$TMP/sigchld" 2>&1)"
expect_eq "... the bucket has them (kvtool)" "parent child" \
    "$($KVTOOL get "$B" pr.sig9.txt | paste -sd' ')"
# The program closes every descriptor (closefrom) while one is held: said, never a commit
# of whatever file that number is now.
run "$PY" - <<'PY' 2>"$TMP/closefrom.err"
import os, subprocess
with open("/state/proc/cf.txt", "w") as f:
    f.write("parent\n"); f.flush()
    p = subprocess.Popen(["sh", "-c", "sleep 0.3; echo child"], stdout=f)
os.closerange(3, 65536)
p.wait()
PY
expect_eq "held, then closefrom by the program: one warning, the close's commit kept" \
    "1|parent" "$(grep -c "cf.txt: the shim's descriptor of it was closed" "$TMP/closefrom.err")|$($KVTOOL get "$B" pr.cf.txt)"
run "$PY" -c '
import subprocess
with open("/state/proc/late.txt", "w") as f:
    subprocess.Popen(["sh", "-c", "sleep 0.5; echo late"], stdout=f)
' 2>"$TMP/late.err"
expect_eq "the owner exits while a child still writes: one warning, naming the file" 1 \
    "$(grep -c 'late.txt: process [0-9]* still has it open as this one exits' "$TMP/late.err")"

# The owner exits first and its child writes on: the child commits (a daemon's log, opened
# by the parent that exited); where the owner's exit had committed a change meanwhile, the
# child's close says EEXIST instead of reporting 0 for bytes that land nowhere.
out=$(run "$PY" - <<'PY' 2>"$TMP/orphan.err"
import os, subprocess, sys, time
with open("/state/proc/dm.txt", "w") as f:
    f.write("start\n")
f = open("/state/proc/dm.txt", "a")
with open("/state/proc/dm2.txt", "w") as g:
    g.write("start\n")
g = open("/state/proc/dm2.txt", "a")  # a read: its commit expects that revision
g.write("parent\n"); g.flush()
if os.fork() == 0:
    time.sleep(0.5)
    f.write("daemon\n"); f.flush()
    try:
        with open("/state/proc/dm2.txt", "a") as h:
            h.write("child\n")
        r = "close 0"
    except FileExistsError:
        r = "close EEXIST"
    print(r, flush=True)
    os._exit(0)
os._exit(0)
PY
)
sleep 1
expect_eq "the owner exits, its child writes on: the daemon's line lands; a change the exit committed gives EEXIST" \
    "start daemon|close EEXIST|start parent" \
    "$($KVTOOL get "$B" pr.dm.txt | paste -sd' ')|$out|$($KVTOOL get "$B" pr.dm2.txt | paste -sd' ')"
