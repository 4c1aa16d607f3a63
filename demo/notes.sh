#!/usr/bin/env bash
# notes.sh DIR: writes and lists state with nothing but the shell, echo, cat and ls.
# A plain script: under the asya-state shim DIR lives in a NATS KV bucket.
set -euo pipefail
dir=$1
mkdir -p "$dir/notes"
echo "buy milk" >"$dir/notes/monday.txt"
echo "call Alice" >"$dir/notes/tuesday.txt"
echo "water the plants" >>"$dir/notes/tuesday.txt"
echo "  ls $dir/notes:"
ls "$dir/notes" | sed 's/^/    /'
echo "  cat $dir/notes/tuesday.txt:"
sed 's/^/    /' <"$dir/notes/tuesday.txt"
rm "$dir/notes/monday.txt"
echo "  after rm monday.txt, ls $dir/notes:"
ls "$dir/notes" | sed 's/^/    /'
