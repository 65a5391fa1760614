"""The tutorial notebooks of the docs site (docs/tutorials/*.ipynb), executed headless.

Every notebook found by the glob is stored without outputs, is listed in mkdocs.yml's nav, and
runs from top to bottom in a kernel of this venv (``nbclient``, kernel ``python3``) in a fresh
folder, as ``make docs`` (mkdocs-jupyter, ``execute: true``) runs it: no cell may raise. A
notebook with an entry in ``CHECKS`` then gets one more cell that prints a JSON line of its
results, and the test holds those against known answers (a bit-exact compression round trip,
a run folder that loads back to the same ELBO, the IS estimate above the ELBO, the gradient
SNR trends of Rainforth et al. 2018, an M2 classifier well above chance). Digits, small
networks, few epochs: each notebook takes 15-90 s on a 2-core CPU.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = ROOT / "docs" / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))

# The cell appended to each notebook: its last stdout line is a JSON object of the kernel's
# results, read back by the notebook's check below.
CHECKS = {
    "first_vae": '''
import json, math
from pathlib import Path
print(json.dumps({
    "test_elbo": run.metrics["test_elbo"], "loaded_elbo": again["elbo"],
    "is_log_px": -result["test_nll"], "khat_shares": [khat["share_below_0_5"],
        khat["share_0_5_to_0_7"], khat["share_above_0_7"]],
    "bounds": bounds, "pyro_elbo": -float(trace_loss),
    "files": sorted(p.name for p in Path("runs/first-vae").iterdir())}))
''',
    "bring_your_own_model": '''
import json
print(json.dumps({"models": list(table.index), "elbo": table["test ELBO"].tolist(),
                  "log_px": table["IS log p(x), K=500"].tolist(),
                  "parameters": table["parameters"].tolist()}))
''',
    "bounds_and_estimators": '''
import json
print(json.dumps({"runs": [[r["objective.bound"], r["objective.gradient"], r["test_elbo"],
                            r["test_nll"]] for r in grid.rows],
                  "invalid": [c.label for c in grid.invalid],
                  "snr": snr.to_dict(orient="records")}))
''',
    "semi_supervised_m2": '''
import json
from pathlib import Path
print(json.dumps({"accuracy": run.metrics["test_accuracy"], "labels": run.metrics["labels"],
                  "own_accuracy": float((run.model.classify(data.test_data()) ==
                                         data.test_y).float().mean()),
                  "baseline": baseline_accuracy, "grid": list(grid.shape),
                  "files": sorted(p.name for p in run.path.iterdir())}))
''',
    "compression": '''
import json
print(json.dumps({"round_trip": round_trip, "file_bpd": stats["bits_per_dim"],
                  "net_bpd": stats["net_bits_per_dim"], "ideal_bpd": stats["ideal_bits_per_dim"],
                  "elbo_bpd": run.metrics["test_bpd"], "rates": rates.to_dict(),
                  "curve": curve.reset_index().to_dict(orient="records"),
                  "ceiling": ceiling}))
''',
}


def check_first_vae(got: dict, folder: Path) -> None:
    elbo = got["test_elbo"]
    assert math.isfinite(elbo) and -40 < elbo < 0, elbo   # nats per 8x8 binary image
    assert got["loaded_elbo"] == pytest.approx(elbo, abs=1e-9)  # the run folder loads back
    assert got["is_log_px"] > elbo                             # IS(K=1000) above the ELBO
    assert got["bounds"][-1] > got["bounds"][0]                # the bound tightens with K
    assert abs(got["pyro_elbo"] - elbo) < 1.0                  # Pyro's Trace_ELBO agrees
    assert sum(got["khat_shares"]) == pytest.approx(1.0)
    for name in ("checkpoint.pt", "samples.png", "reconstructions.png", "elbo.png", "eval.json",
                 "khat.png", "interpolate.png", "traverse.png"):
        assert name in got["files"], name
    assert (folder / "runs" / "first-vae" / "config.toml").is_file()


def check_bring_your_own_model(got: dict, folder: Path) -> None:
    assert len(got["models"]) == 3 and len(set(got["parameters"])) == 1  # same networks
    assert all(math.isfinite(v) and v < 0 for v in got["elbo"] + got["log_px"])
    assert all(lp > e for lp, e in zip(got["log_px"], got["elbo"]))
    mine, builtin_trace = got["elbo"][0], got["elbo"][1]
    assert abs(mine - builtin_trace) < 1.0, got   # the same model, written twice
    assert (folder / "runs" / "compare" / "notebook-vae" / "checkpoint.pt").is_file()


def check_bounds_and_estimators(got: dict, folder: Path) -> None:
    pairs = [tuple(r[:2]) for r in got["runs"]]
    assert pairs == [("elbo", "reparam"), ("elbo", "stl"), ("elbo", "dreg"),
                     ("iwae", "reparam"), ("iwae", "dreg")]
    assert len(got["invalid"]) == 1 and "stl" in got["invalid"][0]  # biased: refused
    assert all(math.isfinite(r[2]) and math.isfinite(r[3]) for r in got["runs"])
    assert (folder / "runs" / "bounds-grid" / "compare.csv").is_file()
    snr = {(r["estimator"], r["K"]): r for r in got["snr"]}
    kmax = max(k for _, k in snr)
    # Rainforth et al. 2018: IWAE's encoder SNR falls with K, its decoder SNR rises;
    # DReG (Tucker et al. 2018) keeps the encoder's above plain IWAE's
    assert snr["IWAE", kmax]["encoder"] < snr["IWAE", 1]["encoder"]
    assert snr["IWAE", kmax]["decoder"] > 2 * snr["IWAE", 1]["decoder"]
    assert snr["IWAE-DReG", kmax]["encoder"] > 3 * snr["IWAE", kmax]["encoder"]


def check_semi_supervised_m2(got: dict, folder: Path) -> None:
    assert got["labels"] == 100
    assert got["accuracy"] > 0.5  # chance is 0.1
    assert got["own_accuracy"] == pytest.approx(got["accuracy"])
    assert 0.5 < got["baseline"] <= 1.0
    assert got["grid"][0] == 10 * 8 and got["grid"][1] == 64  # 10 classes x 8 styles
    for name in ("by_class.png", "analogies.png", "history.csv", "checkpoint.pt"):
        assert name in got["files"], name


def check_compression(got: dict, folder: Path) -> None:
    assert got["round_trip"] is True
    # the net rate is the ideal one (the coder's own overhead is tiny), and its mean is the
    # -ELBO of the discretised latent model: close to the run's -ELBO
    assert got["net_bpd"] == pytest.approx(got["ideal_bpd"], rel=0.01)
    assert abs(got["net_bpd"] - got["elbo_bpd"]) < 0.05
    assert got["file_bpd"] < min(v for k, v in got["rates"].items() if k.startswith("gzip"))
    assert (folder / "runs" / "compression" / "test.pvz").is_file()
    bits = [row["bits per pixel"] for row in got["curve"]]   # steps from large to small
    psnr = [row["PSNR dB"] for row in got["curve"]]
    assert bits == sorted(bits) and psnr[-1] > psnr[0]
    assert psnr[-1] <= got["ceiling"] + 0.5


def executed(notebook_path: Path, folder: Path, extra: str | None):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    notebook = nbformat.read(notebook_path, as_version=4)
    if extra:
        notebook.cells.append(nbformat.v4.new_code_cell(extra))
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(folder)}})
    client.execute()  # raises CellExecutionError when a cell raises
    return notebook


def test_there_are_tutorials():
    assert {p.stem for p in NOTEBOOKS} >= set(CHECKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs_and_in_the_nav(path):
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, \
                f"{path.name}: clear the outputs before committing (the docs build runs it)"
    nav = (ROOT / "mkdocs.yml").read_text()
    assert f"tutorials/{path.name}" in nav, f"{path.name} is not in mkdocs.yml's nav"
    # mkdocs-jupyter does not rewrite a notebook's links (nor does the strict build check
    # them): they are written as the site's URLs, ../../PAGE/#anchor, checked here
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        for page, anchor in re.findall(r"\]\(\.\./\.\./([\w-]+)/(?:#([\w-]+))?\)", cell.source):
            doc = ROOT / "docs" / f"{page}.md"
            assert doc.is_file(), f"{path.name} links to ../../{page}/: no docs/{page}.md"
            if anchor:
                slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                         for h in re.findall(r"^#+ (.*)$", doc.read_text(), re.M)}
                assert anchor in slugs, f"{path.name}: no heading #{anchor} in docs/{page}.md"
        assert "](../" not in cell.source.replace("](../../", ""), \
            f"{path.name}: link docs pages as ../../PAGE/ (the site's URL), not ../PAGE.md"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_tutorial_runs_headless(path, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel's torch: tiny models, busy CPU
    notebook = executed(path, tmp_path, CHECKS.get(path.stem))
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    for cell in code:
        err = "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stderr")
        assert "Traceback" not in err, err
    assert any({"image/png", "text/html"} & set(o.get("data", {})) for c in code
               for o in c.outputs), "a tutorial shows pictures or tables"
    if path.stem in CHECKS:
        stdout = "".join(o["text"] for o in code[-1].outputs if o.get("name") == "stdout")
        got = json.loads(stdout.strip().splitlines()[-1])
        globals()[f"check_{path.stem}"](got, tmp_path)
