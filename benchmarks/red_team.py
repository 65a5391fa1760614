"""The red team of issue 28, rerun: every case in tests/red_team/ against this tree, or against
another checkout of pyrovae (the "before"), with a table of what held.

    python -m benchmarks.red_team                      # this tree
    git archive 2518f64 | tar -x -C /tmp/before
    python -m benchmarks.red_team --tree /tmp/before   # the same cases against that code

A case holds when its test passes: a bad input or fault gets one line, a non-zero exit and no
lost work; a run folder runs no code without consent; a result never silently describes other
data; an allocation that cannot fit is refused or caught in one line. With ``--tree`` the cases
(this tree's tests/red_team/) are copied into that checkout's tests/ and run there, against
its ``pyrovae``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "red_team"
HELPERS = ("conftest.py", "support")   # test helpers the cases import (a file, a folder)


def run(tree: Path | None, report: Path) -> list[dict]:
    """Run the cases; one row per test: file, name, outcome, the first line of a failure.
    With ``tree``, this tree's tests/red_team/ (and the shared test helpers) are copied into
    the other checkout and run there, so that its ``pyrovae`` is the one imported."""
    where = ROOT
    if tree is not None:
        where = tree.resolve()
        target = where / "tests"
        shutil.copytree(CASES, target / "red_team", dirs_exist_ok=True)
        for helper in HELPERS:
            if (ROOT / "tests" / helper).is_dir():
                shutil.copytree(ROOT / "tests" / helper, target / helper, dirs_exist_ok=True)
            else:
                shutil.copy2(ROOT / "tests" / helper, target / helper)
    rows = []
    for path in sorted(CASES.glob("test_*.py")):
        rows += _run_file(where, f"tests/red_team/{path.name}", report)
    return rows


def _pytest(where: Path, target: str, report: Path) -> bool:
    """Run ``target`` (a file or a node id) under pytest; whether it wrote its report (a case
    may kill the whole process, as SIGTERM did before issue 28)."""
    report.unlink(missing_ok=True)
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    f"--junitxml={report.resolve()}", target], cwd=where,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return report.is_file()


def _run_file(where: Path, target: str, report: Path) -> list[dict]:
    """The rows of one file; if a case killed the process, each case on its own."""
    if _pytest(where, target, report):
        return _rows(report)
    listed = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only",
                             "-p", "no:cacheprovider", target], cwd=where, text=True,
                            capture_output=True, check=False).stdout.splitlines()
    rows = []
    for node in (line for line in listed if "::" in line):
        if _pytest(where, node, report):
            rows += _rows(report)
        else:
            rows.append({"file": Path(target).stem, "case": node.split("::", 1)[1],
                         "outcome": "BAD", "why": "the process was killed"})
    return rows


def _rows(report: Path) -> list[dict]:
    rows = []
    for case in ET.parse(report).getroot().iter("testcase"):
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        skipped = case.find("skipped") is not None
        outcome = "skipped" if skipped else ("BAD" if failure is not None else "OK")
        message = (failure.get("message") or "").splitlines()[0][:160] if failure is not None \
            else ""
        rows.append({"file": case.get("classname", "").rsplit(".", 1)[-1],
                     "case": case.get("name"), "outcome": outcome, "why": message})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=None,
                        help="a checkout whose pyrovae the cases run against (default: this)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "red_team_" + ("here" if args.tree is None else args.tree.name)
    rows = run(args.tree, args.out / f"{name}.xml")
    (args.out / f"{name}.xml").unlink(missing_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(rows, indent=1))
    for r in rows:
        print(f"{r['outcome']:7s} {r['file']:32s} {r['case'][:70]:70s} {r['why'][:60]}")
    counts = {k: sum(r["outcome"] == k for r in rows) for k in ("OK", "BAD", "skipped")}
    print(json.dumps(counts))
    return 0 if counts["BAD"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
