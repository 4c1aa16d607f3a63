"""readme_blocks.py README PORT: prints, as one bash script, the README's shell blocks (```sh and
```bash fences) in order, for t_readme.sh to run as a reader would, top to bottom in one shell.

A block whose nearest non-blank line above is an HTML comment starting `<!-- norun` is left out
(docker, kubectl, the test suite itself); the comment must give the reason after `norun:`.
`<!-- norun "TEXT": reason -->` leaves out only the block's lines that contain TEXT (the quick
start's second command, the test suite itself), and runs the rest.
The one rewrite: the port 4222 of the README's local nats-server becomes PORT, so the test
never needs (or disturbs) a server on the standard port. Each block is preceded by a
`# block N` line and followed by a `readme-block N done` line: the script runs under `set -e`,
so a command that fails stops it there (except inside `a && b` lists, as in any shell: the
test checks the blocks' results with kvtool). On stderr, one `norun LINE: REASON` line per
block left out. Exits 1 when a norun comment has no reason or the README has no block to run.
"""

import re
import sys

FENCE = re.compile(r"^```(sh|bash)\s*$")


def blocks(lines):
    """Yields (first line number, body, norun reason or None) for each sh/bash fence; a
    norun "TEXT" comment drops the lines containing TEXT from body and gives reason None
    (the rest runs), after one stderr line."""
    i = 0
    while i < len(lines):
        if FENCE.match(lines[i]):
            start = i
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            k = start - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            above = lines[k].strip() if k >= 0 else ""
            reason = None
            body = lines[start + 1:j]
            if above.startswith("<!-- norun"):
                m = re.match(r'<!-- norun(?: "([^"]+)")?:\s*(.*?)\s*-->$', above)
                reason = m.group(2) if m and m.group(2) else ""
                if m and m.group(1) and reason:
                    kept = [b for b in body if m.group(1) not in b]
                    print(f"norun {start + 1} (its lines with {m.group(1)!r}): {reason}",
                          file=sys.stderr)
                    body, reason = kept, None
            yield start + 1, "\n".join(body), reason
            i = j + 1
        else:
            i += 1


def main():
    if len(sys.argv) != 3:
        raise SystemExit("usage: readme_blocks.py README PORT")
    with open(sys.argv[1]) as f:
        lines = f.read().splitlines()
    port = sys.argv[2]
    out = ["set -e"]
    n = 0
    bad = False
    for line, body, reason in blocks(lines):
        if reason is not None:
            print(f"norun {line}: {reason or 'NO REASON GIVEN'}", file=sys.stderr)
            bad = bad or not reason
            continue
        n += 1
        out.append(f"# block {n} (README line {line})")
        out.append(re.sub(r"\b4222\b", port, body))
        out.append(f"printf '\\n%s\\n' \"readme-block {n} done (line {line})\"")
    if n == 0:
        print("readme_blocks: no shell block to run", file=sys.stderr)
        bad = True
    print("\n".join(out))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
