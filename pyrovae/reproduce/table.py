"""The reproduction table: every OUT/NAME/row.json as OUT/table.md, table.json, table.csv and
OUT/curves.png (each run's test curve per epoch: -ELBO in nats for the likelihood rows, test
accuracy for the classification rows)."""

from __future__ import annotations

import json
from pathlib import Path

from pyrovae.runtime.files import atomic_write, read_csv, write_csv, write_json
from pyrovae.reports.numbers import format_estimate
from pyrovae.reports.plots import save_figure, subplots

COLUMNS = ("name", "paper", "table", "metric", "paper_value", "ours", "ours_se", "goal", "met",
           "epochs", "train_seconds", "eval_seconds", "seed", "nll_samples", "points",
           "command", "data", "comparable", "other_data", "data_sha256")
#: what the table says of a row on other data than its recipe's (runner.other_data)
NOT_COMPARABLE = "other data: not comparable"


def read_rows(out: Path) -> list[dict]:
    """The rows written under ``out`` (one per OUT/NAME/row.json), by name."""
    rows = []
    for path in sorted(out.glob("*/row.json")):
        try:
            rows.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue  # a row being rewritten by a run in progress: the next table has it
    return rows


def _value(row: dict, key: str) -> str:
    v = row.get(key)
    if v is None:
        return "—"
    if key in ("ours", "paper_value", "goal"):
        fmt = ".4f" if row["metric"] == "test_accuracy" else ".2f"
        if key == "ours":  # with its standard error, to the error's 2 significant digits
            return format_estimate(v, row.get("ours_se"), pm="±", fmt=fmt)
        return f"{v:{fmt}}"
    if key == "met":
        return "yes" if v else "no"
    if key == "comparable":  # (shown in the "goal met" column)
        return "" if v is not False else NOT_COMPARABLE
    if key.endswith("seconds"):
        return f"{v / 60:.1f} min"
    return str(v)


def markdown(rows: list[dict]) -> str:
    """The rows as a Markdown table (ours beside the paper, then what it cost)."""
    keys = ("name", "paper", "table", "paper_value", "ours", "goal", "met", "epochs",
            "train_seconds", "eval_seconds", "seed")
    heads = ("row", "paper", "paper's row", "published", "ours", "goal", "goal met", "epochs",
             "training", "evaluation", "seed")
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(_value(r, "comparable") if k == "met" and r.get("comparable")
                                is False else _value(r, k) for k in keys) + " |" for r in rows]
    lines += ["", "Commands:", ""] + [f"- `{r['name']}`: `{r['command']}`" for r in rows]
    others = [r for r in rows if r.get("comparable") is False]
    if others:
        lines += ["", "Rows on other data than their recipe's (not compared with the paper):",
                  ""] + [f"- `{r['name']}`: {r.get('other_data')}" for r in others]
    return "\n".join(lines) + "\n"


def save_curves(out: Path, rows: list[dict]) -> Path | None:
    """OUT/curves.png: each run's test curve by epoch (history.csv); None without rows."""
    if not rows:
        return None
    panels = [m for m in ("test_nll", "test_accuracy") if any(r["metric"] == m for r in rows)]
    fig, axes = subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, metric in zip(axes[0], panels):
        for row in (r for r in rows if r["metric"] == metric):
            try:
                history = read_csv(out / row["name"] / "history.csv")
            except Exception:  # noqa: BLE001 - a row without its run folder: no curve
                continue
            key = "test_elbo" if metric == "test_nll" else "test_accuracy"
            points = [(int(h["epoch"]), float(h[key])) for h in history if h.get(key)]
            ys = [-y if metric == "test_nll" else y for _, y in points]
            ax.plot([e for e, _ in points], ys, label=row["name"])
        ax.set_xlabel("epoch")
        ax.set_ylabel("-test ELBO (nats)" if metric == "test_nll" else "test accuracy")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    save_figure(fig, out / "curves.png")
    return out / "curves.png"


def write_table(out: Path) -> list[Path]:
    """Write OUT/table.md, table.json, table.csv and curves.png from the rows under OUT."""
    rows = read_rows(out)
    atomic_write(out / "table.md", markdown(rows))
    write_json(out / "table.json", rows)
    write_csv(out / "table.csv", [{k: r.get(k) for k in COLUMNS} for r in rows])
    curves = save_curves(out, rows)
    return [out / "table.md", out / "table.json", out / "table.csv"] + ([curves] if curves
                                                                        else [])
