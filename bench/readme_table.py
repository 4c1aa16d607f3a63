"""readme_table.py OUTPUT [FILE]: writes the table of docs/performance.md (or FILE; the README
links to it) from `make bench` output (the MACHINE, DATE and "BENCH section | figure |
measured | target | met" lines of bench/bench.py). Replaces the block between
<!-- bench:begin --> and <!-- bench:end -->; when the markers are absent, appends them under a
"## Performance" heading at the end. No figure is typed by hand: everything in the block comes
from OUTPUT, except that the rows of sections OUTPUT does not have (a BENCH_ONLY run) are kept
from the block they replace, and the block says which and from when.
"""
import os
import re
import sys

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def old_rows(block):
    """The rows and the date of a block this script wrote before."""
    rows = []
    for line in block.splitlines():
        if line.startswith("| ") and not line.startswith(("| section ", "|---")):
            cells = [c.strip().replace("\\|", "|") for c in
                     re.split(r"(?<!\\)\|", line.strip().strip("|"))]
            if len(cells) == 5:
                rows.append(cells)
    # each section's run: the block's date, or the one its note gives for the sections it kept
    m = re.search(r"output: (.*?UTC), (.*?v[0-9.]+)\.", block)
    dates = {r[0]: f"{m.group(1)} ({m.group(2)})" if m else "an earlier run" for r in rows}
    for secs, date in re.findall(r"Sections ([^:]*): from the run of (.*?UTC \(.*?\))\.", block):
        dates.update({sec: date for sec in secs.split(", ")})
    return rows, dates


def table(lines, previous=""):
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
    kept_rows, dates = old_rows(previous)
    new_sections = {r[0] for r in rows}
    kept_rows = [r for r in kept_rows if r[0] not in new_sections]
    rows = kept_rows + rows       # kept rows in their order, then this run's
    by_date = {}
    for r in kept_rows:
        secs = by_date.setdefault(dates[r[0]], [])
        if r[0] not in secs:
            secs.append(r[0])
    note = "".join(f" Sections {', '.join(secs)}: from the run of {d}."
                   for d, secs in by_date.items())
    out = [BEGIN,
           f"Written by `bench/readme_table.py` from `make bench` output: {date}, {machine}.{note}",
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
    with open(readme) as f:
        text = f.read()
    b, e = text.find(BEGIN), text.find(END)
    with open(sys.argv[1]) as f:
        block = table(f.read().splitlines(), text[b:e] if b >= 0 and e > b else "")
    if b >= 0 and e > b:
        text = text[:b] + block + text[e + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n## Performance\n\n" + block + "\n"
    with open(readme, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
