"""readme_table.py OUTPUT [FILE]: writes the table of docs/performance.md (or FILE; the README
links to it) from `make bench` output (the MACHINE, DATE and "BENCH section | figure |
measured | target | met" lines of bench/bench.py). Replaces the block between
<!-- bench:begin --> and <!-- bench:end -->; when the markers are absent, appends them under a
"## Performance" heading at the end. No figure is typed by hand: everything in the block comes
from OUTPUT.
"""

import os
import sys

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def table(lines):
    machine = date = "?"
    rows = []
    for line in lines:
        if line.startswith("MACHINE "):
            machine = line[len("MACHINE "):].strip()
        elif line.startswith("DATE "):
            date = line[len("DATE "):].strip()
        elif line.startswith("BENCH "):
            cells = [c.strip() for c in line[len("BENCH "):].split("|")]
            if len(cells) == 5:
                rows.append(cells)
    if not rows:
        raise SystemExit("readme_table: no BENCH lines in the output")
    out = [BEGIN,
           f"Written by `bench/readme_table.py` from `make bench` output: {date}, {machine}.",
           "",
           "| section | figure | measured | target | met |",
           "|---|---|---|---|---|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") or "-" for c in r) + " |" for r in rows]
    out.append(END)
    return "\n".join(out)


def main():
    if len(sys.argv) < 2:
        raise SystemExit("usage: readme_table.py BENCH_OUTPUT [docs/performance.md]")
    readme = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "performance.md")
    with open(sys.argv[1]) as f:
        block = table(f.read().splitlines())
    with open(readme) as f:
        text = f.read()
    b, e = text.find(BEGIN), text.find(END)
    if b >= 0 and e > b:
        text = text[:b] + block + text[e + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n## Performance\n\n" + block + "\n"
    with open(readme, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
