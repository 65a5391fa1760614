"""Paired differences of test NLL between the runs of a ``pyrovae compare`` folder and its first
run, on the same test points (each run's eval_points.csv): mean difference +- its standard
error over points.

    python -m benchmarks.paired_nll runs/estimators-mnist
"""
import csv, math, sys
from pathlib import Path
root = Path(sys.argv[1])
runs = {r["combination"]: r for r in csv.DictReader(open(root / "compare.csv"))}
def nll(run):
    return [-float(r["log_px"]) for r in csv.DictReader(open(root / run / "eval_points.csv"))]
base = nll(next(iter(runs.values()))["run"])
for label, r in runs.items():
    v = nll(r["run"]); d = [a - b for a, b in zip(v, base)]
    m = sum(d) / len(d); se = math.sqrt(sum((x - m) ** 2 for x in d) / (len(d) - 1) / len(d))
    print(f"{label[:70]:70s} nll {sum(v)/len(v):.2f} diff {m:+.2f} ± {se:.2f}")
