#!/bin/sh
# demo/compose.sh: compose.yaml's demo, inside the demo image (asya-state, python3): creates the
# bucket (retried until the server takes JetStream requests), runs the demo programs under
# `asya-state run` (preload mode), checks every result with `asya-state cat`/`ls`, and prints
# "demo: all results correct" (exit 0) or what was wrong (exit 1). Programs as in demo/run.
set -u
demo=${DEMO_DIR:-/demo}
workers=${DEMO_WORKERS:-3}
increments=${DEMO_INCREMENTS:-20}
i=0
until asya-state bucket add "$NATS_KV_BUCKET" --history 1 --max-value-size 1MiB >/dev/null; do
    i=$((i + 1))
    [ "$i" -lt 30 ] || { echo "demo: cannot create the bucket $NATS_KV_BUCKET"; exit 1; }
    sleep 1
done
asya-state check || { echo "demo: asya-state check found a problem"; exit 1; }

failed=0
result() { # result NAME EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then
        echo "  OK: $1"
    else
        echo "  WRONG: $1: expected '$2', got '$3'"
        failed=$((failed + 1))
    fi
}

echo "== counter.py: $workers copies at once, $increments increments each, on /state/counter"
pids=
for _ in $(seq "$workers"); do
    asya-state run -- python3 "$demo"/counter.py /state/counter "$increments" &
    pids="$pids $!"
done
for p in $pids; do wait "$p" || echo "  a counter.py exited with $?"; done
result "the counter is $((workers * increments))" "$((workers * increments))" \
    "$(asya-state cat /state/counter 2>&1)"

echo "== notes.sh: echo, cat, ls and rm on /state"
asya-state run -- bash "$demo"/notes.sh /state || echo "  notes.sh exited with $?"
result "notes/tuesday.txt" "call Alice
water the plants" "$(asya-state cat /state/notes/tuesday.txt 2>&1)"
result "notes/ holds tuesday.txt only" "tuesday.txt" "$(asya-state ls /state/notes 2>&1)"

echo "== conflict.py: read, another writer changes the file, our write is refused"
asya-state run -- python3 "$demo"/conflict.py /state/shared.txt
result "conflict.py saw FileExistsError and the other value kept" 0 $?

echo "== asya-state ls /state"
asya-state ls /state | sed 's/^/  /'
if [ "$failed" -eq 0 ]; then
    echo "demo: all results correct"
else
    echo "demo: $failed result(s) wrong"
    exit 1
fi
