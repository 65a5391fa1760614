"""The files of ``pyrovae evaluate``: eval.json, eval_points.csv, khat.png, kl_per_dim.png."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pyrovae.runtime.files import write_csv, write_json
from pyrovae.reports.evaluation_plots import save_khat_histogram, save_kl_per_dim
from pyrovae.reports.trust_plots import save_ais_vs_is, save_gaps


def write_evaluation(result: dict, out: str | Path) -> list[Path]:
    """eval.json, eval_points.csv, khat.png and kl_per_dim.png in folder ``out``; with AIS
    or the gaps (evaluation/trust.py), their per-point columns in the CSV and ais.png /
    gaps.png."""
    out = Path(out)
    per_point = result["per_point"]
    summary = {k: v for k, v in result.items() if k != "per_point"}
    write_json(out / "eval.json", summary)
    extra = [k for k in per_point if k not in ("log_px", "khat")]  # AIS, gaps (trust.py)
    write_csv(out / "eval_points.csv", [
        {"index": i, "log_px": float(lp), "khat": None if np.isnan(k) else float(k),
         **{c: _number(per_point[c][i]) for c in extra}}
        for i, (lp, k) in enumerate(zip(per_point["log_px"], per_point["khat"]))])
    save_khat_histogram(per_point["khat"], out / "khat.png")
    names = ["eval.json", "eval_points.csv", "khat.png"]
    if "ais_log_px" in per_point:
        save_ais_vs_is(per_point["ais_log_px"], per_point["log_px"], out / "ais.png", result)
        names.append("ais.png")
    if "approximation_gap" in per_point:
        save_gaps(per_point["approximation_gap"], per_point["amortization_gap"],
                  out / "gaps.png")
        names.append("gaps.png")
    if result.get("activity") is not None:
        kl = None if result["kl_per_dim"] is None else np.array(result["kl_per_dim"])
        save_kl_per_dim(kl, np.array(result["activity"]), out / "kl_per_dim.png")
        names.append("kl_per_dim.png")
    return [out / name for name in names]


def _number(v) -> float | None:
    v = float(v)
    return None if np.isnan(v) else v
