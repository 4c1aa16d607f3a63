"""cpython_check.py: compares CPython test-suite results on a local directory and on a mount.

usage: cpython_check.py KNOWN README SUITE LOCAL_XML MOUNT_XML

Reads the two --junit-xml files regrtest wrote for SUITE. Prints one "ok - " / "not ok - "
line (lib.sh's format) per check:
  - every test that passed locally passed on the mount, except the ids listed in KNOWN;
  - every KNOWN id of this suite that passed locally still fails on the mount (a stale entry
    is reported, so the list and README's Limits stay true);
  - every category used in KNOWN has its row in README's Limits ("| `category` |").
KNOWN: one test id per line, then its category, then a reason; '#' starts a comment.
A test that passed locally but is missing from the mount's file (a failed subtest, a crash)
counts as failed.
"""
import os
import re
import sys
import xml.etree.ElementTree as ET


def results(path):
    """id -> 'pass' | 'failure' | 'error' | 'skipped' | ..., or None if the file is absent."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    out = {}
    for tc in ET.parse(path).iter("testcase"):
        kids = [k for k in tc if k.tag not in ("system-out", "system-err")]
        if not kids:
            out[tc.get("name")] = ("pass", "")
        else:
            k = kids[0]
            text = (k.get("message") or k.text or "").strip().splitlines()
            out[tc.get("name")] = (k.tag, text[-1][:200] if text else "")
    return out


def known_list(path):
    known = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                parts = line.split(None, 2)
                known[parts[0]] = parts[1] if len(parts) > 1 else ""
    return known


def ok(name):
    print(f"ok - {name}")


def fail(name, why):
    print(f"not ok - {name}: {why[:1500]}")


def main():
    known_path, readme, suite, local_xml, mount_xml = sys.argv[1:6]
    known = known_list(known_path)
    local, mount = results(local_xml), results(mount_xml)
    name = f"cpython {suite}"
    if local is None:
        fail(f"{name}: the local run wrote results", local_xml)
        return
    if mount is None:
        fail(f"{name}: the run on the mount wrote results (crashed or timed out)", mount_xml)
        return
    passed = sorted(t for t, (st, _) in local.items() if st == "pass")
    bad, stale, nknown = [], [], 0
    for t in passed:
        st, msg = mount.get(t, ("missing", "not reported (failed subtest, crash?)"))
        if t in known:
            nknown += 1
            if st == "pass":
                stale.append(t)
        elif st != "pass":
            bad.append(f"{t} [{st}] {msg}")
    n_ok = len(passed) - nknown - len(bad)
    print(f"# {suite}: {len(passed)} passed locally, {n_ok + len(stale)} of them on the mount, "
          f"{nknown} known failures, {len(bad)} regressions")
    if bad:
        fail(f"{name}: every test that passes locally passes on the mount", " | ".join(bad))
    else:
        ok(f"{name}: all {len(passed) - nknown} tests that pass locally pass on the mount "
           f"({nknown} known failures, {known_path.rsplit('/', 1)[-1]})")
    if stale:
        fail(f"{name}: the known failures still fail",
             "now passing, remove from the list: " + " ".join(stale))
    else:
        ok(f"{name}: its {nknown} known failures still fail on the mount")
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    limits = text.split("## Limits", 1)[-1].split("\n## ", 1)[0]
    cats = sorted({c for t, c in known.items() if t.startswith(f"test.{suite}.") and t in passed})
    missing = [c for c in cats if not re.search(r"^\| `" + re.escape(c) + r"` \|", limits, re.M)]
    if missing:
        fail(f"{name}: each known failure's reason is in README's Limits",
             "no row for: " + " ".join(missing))
    else:
        ok(f"{name}: each known failure's reason ({' '.join(cats) or 'none'}) is in README's Limits")


main()
