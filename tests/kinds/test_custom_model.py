"""Models you write yourself (``model.kind = "module"``, docs/custom_models.md): trained through
the API and the CLI, recorded, rebuilt, resumed bit for bit, evaluated, compared, and refused
in one line when they do not follow the interface. Digits, a few hundred points, 1-2 epochs."""

from __future__ import annotations

import csv
import json
import math
import textwrap
from pathlib import Path

import numpy as np
import pyro
import pytest
import torch

import pyrovae
from pyrovae.cli import main
from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.interface import InterfaceError
from pyrovae.runs import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

ROOT = Path(__file__).resolve().parents[2]
SIZES = {"train_size": 256, "test_size": 64}
TRAIN = {"batch_size": 32, "lr": 3e-3, "progress": False}
SMALL = {"hidden": [16, 8], "latent": [4, 2]}  # TwoLayerVAE's arguments, tiny

# Modules a config names by import path: written to a file in the work folder (a class defined
# inside a test function cannot be recorded); "usermods:TinyVAE" is tests/support's TinyVAE.
USERMODS = '''
import pyro, pyro.distributions as dist, torch
from pyro.nn import PyroModule
from torch import nn

from tests.support.tiny_models import TinyVAE  # (latent=4, hidden=16): the shared one


class PixVAE(TinyVAE):
    """Observes the data at a site named "pix", not "x"."""

    def model(self, x, n_data=None):
        with self._plate(x, n_data):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.latent), 1.0).to_event(1))
            pyro.sample("pix", dist.Bernoulli(logits=self.dec(z)).to_event(1), obs=x)


class HalvesVAE(TinyVAE):
    """Observes the data at two sites: its first 24 pixels ("top") and the rest ("rest")."""

    def model(self, x, n_data=None):
        with self._plate(x, n_data):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.latent), 1.0).to_event(1))
            logits = self.dec(z)
            pyro.sample("top", dist.Bernoulli(logits=logits[..., :24]).to_event(1),
                        obs=x[..., :24])
            pyro.sample("rest", dist.Bernoulli(logits=logits[..., 24:]).to_event(1),
                        obs=x[..., 24:])


class NoGuide(PyroModule):
    def __init__(self, input_shape):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.net = nn.Linear(4, 64)

    def model(self, x, n_data=None):
        pass


class OutsidePlate(TinyVAE):
    """A global latent g sampled outside the "data" plate."""

    def model(self, x, n_data=None):
        g = pyro.sample("g", dist.Normal(x.new_zeros(()), 1.0))
        with self._plate(x, n_data):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.latent), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.dec(z) + g).to_event(1), obs=x)

    def guide(self, x, n_data=None):
        pyro.sample("g", dist.Normal(x.new_zeros(()), 1.0))
        super().guide(x, n_data)
'''


def config_text(target: str = "usermods:TinyVAE", args: str = "{latent = 4, hidden = 16}",
                elbo: str = "trace") -> str:
    return textwrap.dedent(f"""\
        [model]
        kind = "module"
        target = "{target}"
        args = {args}
        elbo = "{elbo}"

        [data]
        name = "digits"
        binarize = "dynamic"
        train_size = {SIZES['train_size']}
        test_size = {SIZES['test_size']}

        [train]
        epochs = 1
        batch_size = 32
        lr = 3e-3
        progress = false
        """)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder holding usermods.py, made the current folder and importable (as a user runs
    `pyrovae` from the folder of their model), with the repository root importable too (for
    examples.custom_model)."""
    folder = tmp_path_factory.mktemp("usermods")
    (folder / "usermods.py").write_text(USERMODS)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.syspath_prepend(str(folder))
        mp.syspath_prepend(str(ROOT))
        yield folder


@pytest.fixture(scope="module")
def model_cls(work):
    from examples.custom_model import TwoLayerVAE

    return TwoLayerVAE


@pytest.fixture(scope="module")
def data():
    return pyrovae.load_dataset("digits", binarize="dynamic", **SIZES)


def fresh(model_cls, data, seed: int = 0):
    pyro.set_rng_seed(seed)  # the module's initial parameters come from the caller's stream
    return model_cls(data.shape, **SMALL)


@pytest.fixture(scope="module")
def api_run(work, model_cls, data):
    """The example's TwoLayerVAE trained for 2 epochs through ``pyrovae.train``."""
    out = work / "api-run"
    return pyrovae.train(fresh(model_cls, data), data, out=out, epochs=2, **TRAIN)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("pyrovae: error: "), err
    return lines[0]


# ---- the Python API ------------------------------------------------------------------------


def test_api_run_folder_records_the_module(api_run, model_cls):
    out = api_run.path
    for name in ("config.toml", "checkpoint.pt", "history.csv", "metrics.json", "elbo.png",
                 "samples.png", "reconstructions.png"):  # the last two: sample, reconstruct
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert math.isfinite(metrics["test_elbo"]) and metrics["test_elbo"] < 0
    assert metrics["epochs"] == 2 and metrics["steps"] == 2 * (256 // 32)
    text = (out / "config.toml").read_text()
    assert 'kind = "module"' in text and 'target = "examples.custom_model:TwoLayerVAE"' in text
    model = pyrovae.load_config(out / "config.toml").model
    assert model.kind == "module" and model.target == "examples.custom_model:TwoLayerVAE"
    assert model.args == SMALL  # input_shape is not recorded: the data's shape on rebuild
    assert model.elbo == "trace" and model.num_particles == 1
    assert pyrovae.capabilities(api_run.vae) == {"sample", "reconstruct"}


def test_load_rebuilds_the_same_class_and_parameters(api_run, model_cls):
    loaded = pyrovae.load(api_run.path, trust_module=True)
    assert type(loaded.vae) is model_cls
    assert loaded.vae.input_shape == (1, 8, 8) and list(loaded.vae.hidden) == SMALL["hidden"]
    mine, theirs = api_run.vae.state_dict(), loaded.vae.state_dict()
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert torch.equal(mine[key], theirs[key]), key
    assert loaded.config == api_run.config
    assert float(loaded.history[-1]["test_elbo"]) == pytest.approx(api_run.metrics["test_elbo"])


def test_resume_is_bitwise_identical(api_run, model_cls, data, work):
    stopped = work / "resumed"
    pyrovae.train(fresh(model_cls, data), data, out=stopped, epochs=1, **TRAIN)
    assert load_checkpoint(stopped)["epoch"] == 2  # the next epoch to run
    pyrovae.train(fresh(model_cls, data, seed=123), data, out=stopped, resume=True, epochs=2,
                  **TRAIN)  # (its initial parameters are replaced by the checkpoint's)
    a, b = load_checkpoint(api_run.path), load_checkpoint(stopped)
    assert a["step"] == b["step"] == 16
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa
    assert strip(a["history"]) == strip(b["history"])
    assert pyrovae.load_config(stopped / "config.toml").train.epochs == 2


def test_evaluate_run_api_on_a_module(api_run, data):
    result = pyrovae.evaluate_run(api_run, data, nll_samples=25, progress=False)
    assert result["num_points"] == 64
    assert math.isfinite(result["test_nll"]) and result["active_units"] is None  # no encoder
    assert 0 <= result["khat_share_above_0_7"] <= 1


def test_a_class_from_main_is_recorded_as_such(work):
    """A class defined in a script run as ``python script.py`` (or a notebook) has module
    ``__main__``: the run records target "__main__:Name", which says that no other process can
    import it (tests/kinds/test_user_models.py: ``pyrovae.load(RUN, model=Name)`` rebuilds it)."""
    import usermods

    cls = type("Mine", (usermods.TinyVAE,), {"__module__": "__main__"})
    config = pyrovae.module_config(cls((1, 8, 8)))
    assert config.target == "__main__:Mine" and config.args == {"latent": 4, "hidden": 16}


# ---- the command line ----------------------------------------------------------------------


def test_cli_evaluate_on_an_api_run(api_run, capsys):
    code = main(["evaluate", str(api_run.path), "--nll-samples", "50", "--quiet",
                 "--trust-module"])
    assert code == 0, capsys.readouterr().err
    result = json.loads((api_run.path / "eval.json").read_text())
    assert result["nll_samples"] == 50 and result["num_points"] == 64
    nll, elbo = result["test_nll"], result["test_elbo"]
    assert math.isfinite(nll) and nll > 0
    # log mean_k w_k >= the mean of log w_k in expectation: NLL_K <= -ELBO, up to noise
    margin = 3 * (result["test_nll_se"] + result["test_elbo_se"]) + 0.5
    assert nll <= -elbo + margin, (nll, elbo)
    assert "NLL (K=50)" in capsys.readouterr().out


@pytest.fixture(scope="module")
def cli_config(work):
    path = work / "tiny.toml"
    path.write_text(config_text())
    return path


def test_cli_train_module_config(cli_config, work, capsys):
    out = work / "cli-run"
    assert main(["train", str(cli_config), "--out", str(out)]) == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert math.isfinite(metrics["test_elbo"]) and metrics["objective"] == "trace"
    config = pyrovae.load_config(out / "config.toml")
    assert config.model.kind == "module" and config.model.target == "usermods:TinyVAE"
    assert config.model.args == {"latent": 4, "hidden": 16}
    assert type(pyrovae.load(out).vae).__name__ == "TinyVAE"
    # resume through the CLI, one more epoch
    assert main(["train", "--resume", str(out), "--set", "epochs=2"]) == 0
    assert [int(r["epoch"]) for r in pyrovae.load(out).history] == [1, 2]


@pytest.mark.parametrize("vary", ["elbo=trace,iwae+num_particles=3", "num_particles=1,3"])
def test_cli_compare_plans_a_module_grid(cli_config, vary, capsys):
    assert main(["compare", str(cli_config), "--vary", vary, "--dry-run"]) == 0
    planned = [line for line in capsys.readouterr().out.splitlines() if line.startswith("run ")]
    assert len(planned) == 2, planned


def test_cli_compare_module_config(cli_config, work, capsys):
    out = work / "compare"
    code = main(["compare", str(cli_config), "--vary", "elbo=trace,iwae+num_particles=3",
                 "--nll-samples", "25", "--grad-draws", "2", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    with open(out / "compare.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["elbo"] for r in rows] == ["trace", "iwae+num_particles=3"]
    assert all(math.isfinite(float(r["test_nll"])) for r in rows)
    assert all(math.isfinite(float(r["grad_var_total"])) for r in rows)
    assert (out / "elbo-iwae+num_particles-3_seed0" / "eval.json").is_file()


# ---- applications on a module run: what its capabilities allow ----------------------------


def test_cli_sample_uses_the_modules_own_sample(api_run, capsys):
    assert main(["sample", str(api_run.path), "--n", "8", "--trust-module"]) == 0, \
        capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["n"] == 8
    assert (api_run.path / "sample.png").is_file()


@pytest.mark.parametrize("command", ["interpolate", "traverse", "latent-map", "impute"])
def test_cli_commands_needing_an_encoder_refuse_in_one_line(api_run, command, capsys):
    assert main([command, str(api_run.path), "--trust-module"]) == 2
    line = one_line_error(capsys)
    assert "needs a Gaussian encoder" in line and "TwoLayerVAE does not declare" in line


@pytest.mark.parametrize("command", ["reconstruct", "anomaly"])
def test_cli_reconstruct_and_anomaly_on_a_module_run(api_run, command, capsys):
    assert main([command, str(api_run.path), "--trust-module"]) == 0


# ---- refusals: one line, exit status 2 -----------------------------------------------------

REFUSED = {
    "cannot-import": ("no_such_package_xyz.models:Model", "{}", "cannot import"),
    "no-such-class": ("usermods:NoSuchClass", "{}", "has no 'NoSuchClass'"),
    "wrong-args": ("usermods:TinyVAE", "{latnt = 4}", "does not take model.args"),
    "no-guide": ("usermods:NoGuide", "{}", "has no guide method"),
    "outside-data-plate": ("usermods:OutsidePlate", "{}", "not inside a vectorized pyro.plate "
                                                          "named 'data'"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_cli_train_refuses_in_one_line(case, work, capsys):
    target, args, needle = REFUSED[case]
    path = work / f"{case}.toml"
    path.write_text(config_text(target, args))
    assert main(["train", str(path), "--out", str(work / f"refused-{case}")]) == 2
    assert needle in one_line_error(capsys)


def test_outside_plate_refusal_leaves_no_run_folder(work, capsys):
    path = work / "outside-again.toml"
    path.write_text(config_text("usermods:OutsidePlate", "{}"))
    out = work / "outside-again"
    assert main(["train", str(path), "--out", str(out)]) == 2
    capsys.readouterr()
    assert not (out / "config.toml").exists()


def test_jit_objective_on_a_module_trains_or_refuses_in_one_line(work, capsys):
    path = work / "jit.toml"
    path.write_text(config_text(elbo="jit-trace"))
    code = main(["train", str(path), "--out", str(work / "jit-run")])
    if code != 0:
        assert code == 2
        one_line_error(capsys)


def test_evaluate_refuses_a_site_outside_the_data_plate(work, data):
    import usermods

    run = pyrovae.Run(usermods.OutsidePlate(data.shape), config=None)  # (not read here)
    with pytest.raises(InterfaceError, match="'g' is not inside a vectorized pyro.plate"):
        pyrovae.evaluate_run(run, data, nll_samples=25, progress=False)


# ---- export: the log-likelihood group names the model's observed sites ---------------------


@pytest.mark.parametrize("cls, observed", [("PixVAE", ["pix"]), ("HalvesVAE", ["top", "rest"])])
def test_export_names_the_log_likelihood_after_the_observed_sites(work, data, cls, observed,
                                                                  capsys):
    """Issue 27: the log_likelihood group held one variable "x" whatever the model observed;
    it holds one variable per observed site, under the site's name, with log p(site | z)."""
    az = pytest.importorskip("arviz")
    import usermods

    pyro.set_rng_seed(0)
    out = work / f"export-{cls}"
    pyrovae.train(getattr(usermods, cls)(data.shape), data, out=out, epochs=1, **TRAIN)
    path = work / f"export-{cls}.nc"
    assert main(["export", str(out), "--arviz", str(path), "--points", "0,2,5",
                 "--draws", "30", "--trust-module"]) == 0, capsys.readouterr().err
    idata = az.from_netcdf(path)
    assert sorted(idata.log_likelihood.data_vars) == sorted(observed)
    for name in observed:
        ll = idata.log_likelihood[name]
        assert ll.dims == ("chain", "draw", "point") and ll.shape == (1, 30, 3)
        assert list(ll["point"].values) == [0, 2, 5]
        assert np.isfinite(ll.values).all() and (ll.values <= 0).all()  # Bernoulli: p <= 1
    x = torch.as_tensor(idata.observed_data["x"].values)  # the data points, as before
    assert x.shape == (3, 64)
    # known answer: log p(site | z_s) of the exported draws z_s, from the decoder itself
    z = torch.as_tensor(idata.posterior["z"].values[0])                       # [S, P, 4]
    with torch.no_grad():
        vae = pyrovae.load(out, trust_module=True).vae
        lp = torch.distributions.Bernoulli(logits=vae.dec(z)).log_prob(x)
    pixels = {"pix": slice(None), "top": slice(0, 24), "rest": slice(24, None)}
    for name in observed:
        np.testing.assert_allclose(idata.log_likelihood[name].values[0],
                                   lp[..., pixels[name]].sum(-1).numpy(), rtol=1e-5, atol=1e-4)
