"""Run folders saved by the previous release (0.1.0, commit 22cf497) still load, evaluate to the
numbers 0.1.0 computed for them, and resume (issue 29: a reorganisation breaks no saved run).

tests/fixtures/runs-0.1.0/ holds one tiny run per model kind, trained by 0.1.0 on digits for one
epoch (make_fixtures.py there regenerates them), and expected.json the numbers of 0.1.0's
``pyrovae evaluate RUN --nll-samples 25 --seed 0`` for each. The fixture is never written: each
test works on a copy in tmp_path.

The numbers are compared to float rounding (timings and memory left out): every float to
1e-6 relative, every count, name and shape exactly. Exact equality held on the machine that
made the fixture and on later ones until a machine of the same kind with another CPU gave
NLLs differing in the tenth significant digit (float32 matrix products take other kernels)
and NumPy 2.4.6 moved the max k-hat by one ulp; a change of the math moves these numbers
by far more than 1e-6 (the k-hat fit amplifies the log weights' last digits: its mean moved by
3e-8). 0.1.0 summed the log-densities
of the guide's latent sites in the order of a Python set of site names, so for the runs with two
latent sites (hvae, module) its NLL's last bits depend on PYTHONHASHSEED; expected.json records
both of its results there, and the new code must give exactly one of them.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch

import pyrovae
from pyrovae.cli import main
from pyrovae.config import to_toml
from pyrovae.runs.folder import RunFolderWarning

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runs-0.1.0"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
CASES = sorted(EXPECTED)
EVALUATE = ["--nll-samples", "25", "--seed", "0", "--quiet"]  # as 0.1.0 was run
#: the component settings of "vae-components", as the config file spells them (whichever
#: table a later release moves a key to, the resolved config still says each)
COMPONENT_SETTINGS = ('"mog"', "components = 3", '"iaf"', "flows = 1", "context = 4",
                      '"gaussian-learned"', "sigma = 0.3", '"renyi"', "renyi_alpha = 0.25")
KIND_CLASS = {"vae": "VAE", "vae-components": "VAE", "ssvae": "SSVAE", "hvae": "HVAE",
              "cvae": "CVAE", "module": "TwoLayerVAE"}


def test_the_fixture_holds_every_kind():
    assert set(CASES) == set(KIND_CLASS)
    kinds = {pyrovae.load_config(FIXTURES / case / "config.toml").model.kind for case in CASES}
    assert kinds == {"vae", "ssvae", "hvae", "cvae", "module"}


def copy(case: str, tmp_path: Path) -> Path:
    run = tmp_path / case
    shutil.copytree(FIXTURES / case, run)
    return run


def trust(case: str) -> list[str]:
    return ["--trust-module"] if case == "module" else []


def model_of(run) -> torch.nn.Module:
    return run.model if hasattr(run, "model") else run.vae  # (Run.vae: the name before 0.2)


def numbers(result: dict) -> dict:
    """eval.json's keys that 0.1.0 recorded, without timings and memory."""
    return {k: v for k, v in result.items() if k != "peak_rss_mb" and not k.endswith("_seconds")}


@pytest.mark.parametrize("case", CASES)
def test_an_old_run_loads(case, tmp_path):
    run_dir = copy(case, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RunFolderWarning)  # metrics.json read as is
        run = pyrovae.load(run_dir, trust_module=case == "module")
    assert type(model_of(run)).__name__ == KIND_CLASS[case]
    saved = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    state = model_of(run).state_dict()
    assert state.keys() == saved["model"].keys()
    assert all(torch.equal(state[k], saved["model"][k]) for k in state)
    assert [row["epoch"] for row in run.history] == [1]
    assert run.metrics["epochs"] == 1 and run.metrics["test_elbo"] < 0
    assert run.data_sha256 == EXPECTED[case][0]["data_sha256"]
    if case == "vae-components":
        text = to_toml(run.config)
        missing = [s for s in COMPONENT_SETTINGS if s not in text]
        assert not missing, (missing, text)


RTOL = 1e-6


def _same(got, want) -> bool:
    """Equal to float rounding: floats to :data:`RTOL` relative, all else exactly, through
    nested dicts and lists (module docstring)."""
    if isinstance(want, dict) and isinstance(got, dict):
        return got.keys() == want.keys() and all(_same(got[k], want[k]) for k in want)
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(_same(a, b) for a, b in zip(got, want))
    if isinstance(want, float) and isinstance(got, float):
        return got == want or abs(got - want) <= RTOL * max(abs(got), abs(want))
    return got == want


@pytest.mark.parametrize("case", CASES)
def test_an_old_run_evaluates_to_the_numbers_of_0_1_0(case, tmp_path, capsys):
    run_dir = copy(case, tmp_path)
    out = tmp_path / "eval"
    code = main(["evaluate", str(run_dir), *EVALUATE, "--out", str(out), *trust(case)])
    assert code == 0, capsys.readouterr().err
    got = numbers(json.loads((out / "eval.json").read_text()))
    variants = EXPECTED[case]  # one, or two for a run with two latent sites (module docstring)
    assert any(_same({k: got.get(k) for k in want}, want) for want in variants), \
        {k: (variants[0][k], got.get(k)) for k in variants[0] if got.get(k) != variants[0][k]}


@pytest.mark.parametrize("case", CASES)
def test_an_old_run_resumes_for_one_more_epoch(case, tmp_path, capsys):
    run_dir = copy(case, tmp_path)
    before = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    code = main(["train", "--resume", str(run_dir), "--set", "epochs=2", *trust(case)])
    assert code == 0, capsys.readouterr().err
    run = pyrovae.load(run_dir, trust_module=case == "module")
    assert [row["epoch"] for row in run.history] == [1, 2]
    assert run.history[0] == before["history"][0]  # the old epoch, as 0.1.0 recorded it
    assert run.metrics["epochs"] == 2 and run.metrics["steps"] == 2 * before["step"]
    assert any(not torch.equal(v, before["model"][k]) for k, v in model_of(run).state_dict().items())
