"""Shareable weights (``pyrovae export RUN --weights DIR/model.safetensors``, pyrovae/runs/
weights.py) and the model card (RUN/README.md, pyrovae/reports/model_card.py).

An exported folder (weights + config.toml + card, no checkpoint) must load and evaluate to the
very numbers of the run it came from (exact equality, fixed seed), through the API and the
CLI, for every model kind (the 0.1.0 fixture runs hold one of each); bad folders are refused in
one line with nothing written; the card holds metrics.json's numbers exactly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("safetensors")

import pyrovae  # noqa: E402
from pyrovae.cli import main  # noqa: E402
from pyrovae.data import load_dataset  # noqa: E402
from pyrovae.evaluation.evaluate import evaluate_run  # noqa: E402
from pyrovae.reports.model_card import model_card, write_model_card  # noqa: E402
from pyrovae.runs.folder import MODEL_CARD_MARK, RunFolderWarning  # noqa: E402
from pyrovae.runs.weights import load_weights, save_weights, weights_bytes  # noqa: E402
from pyrovae.runtime.errors import CheckpointError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

ROOT = Path(__file__).resolve().parents[2]
DIGITS = str(ROOT / "configs" / "digits.toml")
SMALL = ["--set", "epochs=1", "--set", "progress=false", "--set", "data.train_size=300",
         "--set", "data.test_size=100"]
FIXTURES = ROOT / "tests" / "fixtures" / "runs-0.1.0"
CASES = sorted(p.name for p in FIXTURES.iterdir() if (p / "checkpoint.pt").is_file())
EVALUATE = ["--nll-samples", "25", "--points", "40", "--seed", "0", "--quiet"]
EXPORTED = {"model.safetensors", "config.toml", "README.md"}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("pyrovae: error: "), err
    assert "Traceback" not in err, err
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def numbers(result: dict) -> dict:
    """An evaluation's numbers without timings and memory."""
    return {k: v for k, v in result.items() if k not in ("peak_rss_mb", "per_point")
            and not k.endswith("_seconds")}


def front_matter_metrics(card: str) -> dict:
    """The ``pyrovae: metrics:`` block of a card's YAML front matter, values as JSON."""
    head = card.split("\n---\n", 1)[0].splitlines()
    start = head.index("  metrics:")
    metrics = {}
    for line in head[start + 1:]:
        if not line.startswith("    "):
            break
        key, value = line.strip().split(": ", 1)
        metrics[key] = json.loads(value)
    return metrics


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny digits run (1 epoch) trained by the CLI: never changed by the tests."""
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", DIGITS, *SMALL, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def export_dir(run_dir, tmp_path_factory) -> Path:
    """``pyrovae export RUN --weights DIR/model.safetensors``: never changed by the tests."""
    out = tmp_path_factory.mktemp("exported") / "shared"
    assert main(["export", str(run_dir), "--weights", str(out / "model.safetensors")]) == 0
    return out


def copy_of(folder: Path, tmp_path: Path, name: str = "copy") -> Path:
    shutil.copytree(folder, tmp_path / name)
    return tmp_path / name


# ---- the round trip ----------------------------------------------------------------------


def test_export_writes_weights_config_and_card_and_nothing_else(run_dir, export_dir):
    assert {p.name for p in export_dir.iterdir()} == EXPORTED
    assert (export_dir / "config.toml").read_bytes() == (run_dir / "config.toml").read_bytes()
    from safetensors import safe_open

    with safe_open(str(export_dir / "model.safetensors"), framework="pt") as fh:
        meta, names = fh.metadata(), set(fh.keys())
    run = pyrovae.load(run_dir)
    state = run.model.state_dict()
    assert names == set(state)  # parameters and buffers, under their state-dict names
    buffers = {name for name, _ in run.model.named_buffers()}
    assert buffers <= names
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert meta["format"] == "pyrovae-weights" and meta["format_version"] == "1"
    assert meta["pyrovae_version"] == pyrovae.__version__
    assert meta["torch_version"] == torch.__version__
    assert meta["kind"] == run.config.model.kind
    assert json.loads(meta["input_shape"]) == [1, 8, 8]  # digits: 8x8 images
    assert meta["data_sha256"] == metrics["data_sha256"] == run.data_sha256
    assert json.loads(meta["metrics"]) == metrics
    # a plain safetensors reader gets a state dict the model takes
    import safetensors.torch

    plain = safetensors.torch.load_file(str(export_dir / "model.safetensors"))
    assert all(torch.equal(plain[k], state[k]) for k in state)


def test_loaded_export_evaluates_to_the_same_numbers(run_dir, export_dir):
    original, shared = pyrovae.load(run_dir), pyrovae.load(export_dir)
    assert shared.path == export_dir and shared.history == []
    assert shared.config == original.config
    assert shared.metrics == original.metrics and shared.data_sha256 == original.data_sha256
    a, b = original.model.state_dict(), shared.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    data = load_dataset(original.config.data)
    got = [evaluate_run(run, data, nll_samples=25, max_points=40, seed=3, progress=False)
           for run in (original, shared)]
    assert numbers(got[0]) == numbers(got[1])  # to the last digit
    for key in ("log_px", "khat"):
        assert np.array_equal(got[0]["per_point"][key], got[1]["per_point"][key])
    assert got[1]["same_data_as_training"] is True  # the fingerprint travelled with it
    # the weights file itself loads too
    again = pyrovae.load(export_dir / "model.safetensors")
    assert all(torch.equal(again.model.state_dict()[k], a[k]) for k in a)


def test_cli_evaluate_gives_the_same_numbers_on_the_export(run_dir, export_dir, tmp_path):
    for name, folder in (("original", run_dir), ("shared", export_dir)):
        assert main(["evaluate", str(folder), *EVALUATE, "--out", str(tmp_path / name)]) == 0
    first, second = (json.loads((tmp_path / n / "eval.json").read_text())
                     for n in ("original", "shared"))
    assert numbers(first) == numbers(second)
    assert second["same_data_as_training"] is True


def test_commands_on_the_export_write_into_it(export_dir, tmp_path):
    shared = copy_of(export_dir, tmp_path)
    assert main(["sample", str(shared), "--n", "4"]) == 0
    assert (shared / "sample.png").is_file()
    assert main(["export", str(shared), "--arviz", str(shared / "post.nc"), "--points", "0-1",
                 "--draws", "30"]) == 0


def test_export_of_an_export_is_the_same_file(export_dir, tmp_path):
    shared = copy_of(export_dir, tmp_path)
    assert main(["export", str(shared), "--weights", str(tmp_path / "again" /
                                                         "model.safetensors")]) == 0
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == \
        (export_dir / "model.safetensors").read_bytes()


@pytest.mark.parametrize("case", CASES)
def test_every_kind_round_trips(case, tmp_path, capsys):
    """The 0.1.0 runs (one per kind): export, then evaluate both to the same numbers."""
    run = copy_of(FIXTURES / case, tmp_path, case)
    trust = ["--trust-module"] if case == "module" else []
    shared = tmp_path / "shared"
    assert main(["export", str(run), "--weights", str(shared / "model.safetensors"),
                 *trust]) == 0, capsys.readouterr().err
    assert {p.name for p in shared.iterdir()} == EXPORTED
    for name, folder in (("original", run), ("shared", shared)):
        code = main(["evaluate", str(folder), *EVALUATE, "--out", str(tmp_path / name), *trust])
        assert code == 0, capsys.readouterr().err
    first, second = (json.loads((tmp_path / n / "eval.json").read_text())
                     for n in ("original", "shared"))
    assert numbers(first) == numbers(second)
    loaded = pyrovae.load(shared, trust_module=case == "module")
    assert type(loaded.model).__name__ == type(
        pyrovae.load(run, trust_module=case == "module").model).__name__


# ---- refusals: one line, nothing written ---------------------------------------------------


def test_export_refuses_to_overwrite_without_force(run_dir, tmp_path, capsys):
    out = tmp_path / "shared"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"old")
    before = snapshot(out)
    assert main(["export", str(run_dir), "--weights", str(out / "model.safetensors")]) == 2
    assert "exists; pass --force" in one_line_error(capsys)
    assert snapshot(out) == before  # no config.toml, no card, no temporary file
    assert main(["export", str(run_dir), "--weights", str(out / "model.safetensors"),
                 "--force"]) == 0
    assert {p.name for p in out.iterdir()} == EXPORTED
    assert pyrovae.load(out).metrics == pyrovae.load(run_dir).metrics


def test_export_never_replaces_a_readme_of_yours(run_dir, tmp_path, capsys):
    out = tmp_path / "project"
    out.mkdir()
    (out / "README.md").write_text("my notes\n")
    for force in ([], ["--force"]):
        assert main(["export", str(run_dir), "--weights", str(out / "model.safetensors"),
                     *force]) == 2
        assert "is not a pyrovae model card" in one_line_error(capsys)
        assert {p.name for p in out.iterdir()} == {"README.md"}


def test_export_again_with_the_same_contents_needs_no_force(run_dir, export_dir, tmp_path):
    weights = tmp_path / "shared" / "model.safetensors"
    assert main(["export", str(run_dir), "--weights", str(weights)]) == 0
    before = snapshot(weights.parent)
    assert before["model.safetensors"] == (export_dir / "model.safetensors").read_bytes()
    assert main(["export", str(run_dir), "--weights", str(weights)]) == 0
    assert snapshot(weights.parent) == before


@pytest.mark.parametrize("args, message", [
    ([], "give one of them"),
    (["--arviz", "{tmp}/x.nc", "--weights", "{tmp}/w/model.safetensors"], "give one of them"),
    (["--weights", "{tmp}/w/model.pt"], "must end in .safetensors"),
])
def test_export_refuses_bad_options(run_dir, tmp_path, capsys, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    assert main(["export", str(run_dir), *args]) == 2
    assert message in one_line_error(capsys)
    assert not any(tmp_path.iterdir())


def refused(folder: Path, capsys) -> str:
    """``pyrovae evaluate`` on ``folder`` fails in one line and writes nothing there."""
    before = snapshot(folder)
    assert main(["evaluate", str(folder), *EVALUATE]) == 2
    line = one_line_error(capsys)
    assert snapshot(folder) == before
    return line


def test_a_truncated_weights_file_is_refused(export_dir, tmp_path, capsys):
    shared = copy_of(export_dir, tmp_path)
    data = (shared / "model.safetensors").read_bytes()
    for cut in (len(data) - 10, len(data) // 2, 5):
        (shared / "model.safetensors").write_bytes(data[:cut])
        assert "is truncated or corrupt" in refused(shared, capsys)
    (shared / "model.safetensors").write_bytes(b"\x00" * len(data))
    assert "is truncated or corrupt" in refused(shared, capsys)


def test_a_config_of_another_run_is_refused(export_dir, tmp_path, capsys):
    from dataclasses import replace

    from pyrovae.runs.folder import config_text

    shared = copy_of(export_dir, tmp_path)
    config = pyrovae.load_config(shared / "config.toml")
    other = replace(config, model=replace(config.model, latent_dim=3))
    (shared / "config.toml").write_text(config_text(other))
    assert "is not the config 'model.safetensors' was saved with" in refused(shared, capsys)


def test_weights_that_do_not_fit_the_config_are_refused(run_dir, export_dir, tmp_path, capsys):
    """Tensors renamed or reshaped against config.toml (metadata untouched): one line."""
    from pyrovae.runs import load_checkpoint

    payload = load_checkpoint(run_dir)
    first = sorted(payload["model"])[0]
    for change in ("drop", "reshape"):
        model = dict(payload["model"])
        value = model.pop(first)
        if change == "reshape":
            model[first] = torch.zeros(value.numel() + 1)
        shared = copy_of(export_dir, tmp_path, change)
        (shared / "model.safetensors").write_bytes(weights_bytes({**payload, "model": model}))
        line = refused(shared, capsys)
        assert "does not fit" in line and first in line, line
        with pytest.raises(CheckpointError, match="does not fit"):
            pyrovae.load(shared)


def test_a_missing_config_is_refused(export_dir, tmp_path, capsys):
    shared = copy_of(export_dir, tmp_path)
    (shared / "config.toml").unlink()
    with pytest.raises(CheckpointError, match="has no config.toml beside it"):
        pyrovae.load(shared)
    with pytest.raises(CheckpointError, match="has no config.toml beside it"):
        load_weights(shared / "model.safetensors")
    before = snapshot(shared)
    assert main(["evaluate", str(shared), *EVALUATE]) == 2
    assert "no config.toml" in one_line_error(capsys)
    assert snapshot(shared) == before


def test_a_safetensors_file_pyrovae_did_not_write_is_refused(run_dir, export_dir, tmp_path,
                                                             capsys):
    import safetensors.torch

    shared = copy_of(export_dir, tmp_path)
    safetensors.torch.save_file(pyrovae.load(run_dir).model.state_dict(),
                                str(shared / "model.safetensors"))
    assert "is not a pyrovae weights file" in refused(shared, capsys)


def test_an_export_cannot_be_resumed(export_dir, tmp_path, capsys):
    shared = copy_of(export_dir, tmp_path)
    before = snapshot(shared)
    assert main(["train", "--resume", str(shared)]) == 2
    assert "no optimizer state to resume" in one_line_error(capsys)
    with pytest.raises(CheckpointError, match="no optimizer state"):
        pyrovae.train(pyrovae.load_config(shared / "config.toml"), load_dataset("digits"),
                      out=shared, resume=True)
    assert snapshot(shared) == before


def test_save_weights_refuses_a_run_without_a_folder(run_dir, tmp_path):
    run = pyrovae.load(run_dir)
    run.path = None
    with pytest.raises(pyrovae.PyroVAEError, match="no folder"):
        save_weights(run, tmp_path / "model.safetensors")
    assert not any(tmp_path.iterdir())


# ---- the model card ------------------------------------------------------------------------


def test_training_writes_a_model_card_with_the_numbers_of_metrics_json(run_dir):
    card = (run_dir / "README.md").read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    run = pyrovae.load(run_dir)
    assert MODEL_CARD_MARK in card
    shown = front_matter_metrics(card)
    assert {"test_elbo", "test_bpd", "train_elbo"} <= set(shown)
    assert shown == {k: metrics[k] for k in shown}  # exactly metrics.json's
    params = sum(p.numel() for p in run.model.parameters())
    assert f"  parameters: {params}\n" in card and f"| parameters | {params:,} |" in card
    assert metrics["data_sha256"] in card
    assert f"| train examples | {metrics['num_train']} |" in card
    assert f"| test examples | {metrics['num_test']} |" in card
    assert f"| latent size | {run.config.model.latent_dim} |" in card
    assert f"`pyrovae train {run_dir}/config.toml --out NEW_RUN`" in card
    assert f"`pyrovae evaluate {run_dir}`: eval.json's `test_elbo`" in card
    assert f'pyrovae.load("{run_dir}")' in card
    assert f"pyrovae export {run_dir} --weights" in card
    elbo = f"{metrics['test_elbo']:.2f} ± {metrics['test_elbo_se']:.2f}"
    assert elbo in card


def test_the_exported_card_describes_the_export(run_dir, export_dir):
    card = (export_dir / "README.md").read_text()
    assert card == model_card(pyrovae.load(run_dir), export_dir,
                              weights=export_dir / "model.safetensors")
    assert front_matter_metrics(card) == front_matter_metrics(
        (run_dir / "README.md").read_text())
    assert f'pyrovae.load("{export_dir}")' in card and "`model.safetensors`" in card


def test_training_keeps_a_readme_of_yours(tmp_path, capsys):
    out = tmp_path / "project"
    out.mkdir()
    (out / "README.md").write_text("my notes\n")
    assert main(["train", DIGITS, *SMALL, "--out", str(out)]) == 0
    assert "README.md' is not a pyrovae model card; left as it is" in capsys.readouterr().err
    assert (out / "README.md").read_text() == "my notes\n"
    assert main(["train", DIGITS, *SMALL, "--out", str(out), "--force"]) == 0
    assert (out / "README.md").read_text() == "my notes\n"  # --force removes pyrovae's only
    run = pyrovae.load(out)
    with pytest.warns(RunFolderWarning, match="not a pyrovae model card"):
        assert write_model_card(run) is None
    (out / "README.md").unlink()
    assert write_model_card(run) == out / "README.md"  # (a card of pyrovae's is replaced)
    assert write_model_card(run) == out / "README.md"
