"""Issue 27: dead ends for a researcher bringing a model.

A class defined in a script run as ``python script.py``, in a notebook, or inside a function
trains with and without ``out=``; its run records where the class came from, and
``pyrovae.load(RUN, model=Cls)`` rebuilds it there, while the command line refuses it in one
line that says how to load it. A ``model``/``guide`` with a wrong signature, and a sample
site outside the "data" plate (or a plate that ignores ``n_data``), are refused in one line
before anything is written. Digits, a few hundred points, 1-2 epochs, tiny networks.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule
from torch import nn

import pyrovae
from pyrovae.cli import main
from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.interface import InterfaceError

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "docs" / "tutorials" / "bring_your_own_model.ipynb"
SIZES = {"train_size": 256, "test_size": 64}
TRAIN = {"batch_size": 32, "lr": 3e-3, "progress": False}

# The model of the script and of the in-process tests: one latent, tiny MLPs, digits (D = 64).


class Tiny(PyroModule):
    def __init__(self, input_shape, latent=2, hidden=8):
        super().__init__()
        self.input_shape, self.latent, self.hidden = tuple(input_shape), latent, hidden
        self.enc = nn.Sequential(nn.Linear(64, hidden), nn.Tanh(), nn.Linear(hidden, 2 * latent))
        self.dec = nn.Sequential(nn.Linear(latent, hidden), nn.Tanh(), nn.Linear(hidden, 64))

    def _plate(self, x, n_data):
        return pyro.plate("data", n_data or x.shape[0], subsample=torch.arange(x.shape[0]))

    def model(self, x, n_data=None):
        with self._plate(x, n_data):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.latent), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.dec(z)).to_event(1), obs=x)

    def guide(self, x, n_data=None):
        with self._plate(x, n_data):
            loc, s = self.enc(x).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, nn.functional.softplus(s) + 1e-4).to_event(1))


TINY = inspect.getsource(Tiny)  # the script defines the same class in its __main__

SCRIPT = '''
import json, sys
import pyro, pyro.distributions as dist, torch
from pyro.nn import PyroModule
from torch import nn
import pyrovae

torch.set_num_threads(1)
''' + TINY + '''

def same(a, b):
    a, b = a.state_dict(), b.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


out, sizes, options = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
data = pyrovae.load_dataset("digits", binarize="dynamic", **sizes)
pyro.set_rng_seed(0)
in_memory = pyrovae.train(Tiny(data.shape), data, epochs=1, **options)
pyro.set_rng_seed(0)
run = pyrovae.train(Tiny(data.shape), data, out=out, epochs=1, **options)
by_class = pyrovae.load(out, model=Tiny)
into = Tiny(data.shape, latent=2, hidden=8)
by_instance = pyrovae.load(out, model=into)
elbo = pyrovae.evaluate_elbo(by_class.vae, data.test_data())["elbo"]
longer = pyrovae.train(Tiny, data, out=out, resume=True, epochs=2, **options)
print(json.dumps({
    "target": run.config.model.target, "args": run.config.model.args,
    "in_memory_elbo": in_memory.metrics["test_elbo"], "run_elbo": run.metrics["test_elbo"],
    "loaded_elbo": elbo, "same_by_class": same(run.vae, by_class.vae),
    "same_by_instance": same(run.vae, by_instance.vae), "into_is_loaded": by_instance.vae is into,
    "class_rebuilt": type(by_class.vae) is Tiny and by_class.vae.hidden == 8,
    "resumed_epochs": [row["epoch"] for row in longer.history]}))
'''


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("pyrovae: error: "), err
    return lines[0]


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def data():
    return pyrovae.load_dataset("digits", binarize="dynamic", **SIZES)


# ---- a class defined in a script run as `python script.py` ---------------------------------


@pytest.fixture(scope="module")
def script_run(tmp_path_factory):
    """The script above, run as ``python script.py OUT`` by the venv's interpreter in its own
    folder: (the run folder, the numbers it printed)."""
    folder = tmp_path_factory.mktemp("script")
    (folder / "script.py").write_text(SCRIPT)
    out = folder / "run"
    done = subprocess.run([sys.executable, "script.py", str(out), json.dumps(SIZES),
                           json.dumps(TRAIN)], cwd=folder, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, json.loads(done.stdout.strip().splitlines()[-1])


def test_a_script_class_trains_with_and_without_out_and_loads_back(script_run):
    out, got = script_run
    assert got["target"] == "__main__:Tiny" and got["args"] == {"latent": 2, "hidden": 8}
    config = pyrovae.load_config(out / "config.toml").model
    assert config.kind == "module" and config.target == "__main__:Tiny"
    # the same seed with and without a folder: the same run
    assert got["in_memory_elbo"] == got["run_elbo"] < 0
    assert got["same_by_class"] and got["class_rebuilt"]
    assert got["same_by_instance"] and got["into_is_loaded"]
    assert got["loaded_elbo"] == pytest.approx(got["run_elbo"], abs=1e-9)
    assert got["resumed_epochs"] == [1, 2]  # train(Tiny, ..., resume=True): one more epoch


@pytest.mark.parametrize("command", [["evaluate", "--nll-samples", "25"], ["sample"],
                                     ["reconstruct"], ["anomaly"],
                                     ["export", "--arviz", "x.nc"]])
def test_cli_on_a_script_run_says_how_to_load_it(script_run, command, capsys):
    out = script_run[0]
    assert main([command[0], str(out), *command[1:]]) == 2
    line = one_line_error(capsys)
    assert "Tiny was defined in a notebook or script (__main__)" in line
    assert f'pyrovae.load("{out}", model=Tiny)' in line


def test_cli_resume_of_a_script_run_says_how_to_resume_it(script_run, capsys):
    out = script_run[0]
    assert main(["train", "--resume", str(out), "--set", "epochs=3"]) == 2
    line = one_line_error(capsys)
    assert f'pyrovae.train(Tiny, data, out="{out}", resume=True)' in line
    assert pyrovae.load(out, model=Tiny).history[-1]["epoch"] == 2  # nothing was trained


def test_load_of_a_script_run_refuses_without_the_class_or_with_another(script_run):
    out = script_run[0]
    with pytest.raises(ConfigError, match=r"cannot be imported here; .*model=Tiny\)"):
        pyrovae.load(out)

    class Other(Tiny):
        pass

    with pytest.raises(ConfigError, match=r"model=Other does not match .* trained on Tiny"):
        pyrovae.load(out, model=Other)
    with pytest.raises(ConfigError, match=r"model=Other does not match"):
        pyrovae.load(out, model=Other((1, 8, 8)))
    with pytest.raises(ConfigError, match="not both"):
        pyrovae.load(out, model=Tiny, module=Tiny((1, 8, 8)))


def test_a_class_alone_starts_no_run(data):
    with pytest.raises(ConfigError, match=r"pass an instance, Tiny\(\.\.\.\), to start a run"):
        pyrovae.train(Tiny, data, epochs=1, **TRAIN)


# ---- a class defined inside a function -----------------------------------------------------


def test_a_class_defined_in_a_function_trains_and_loads_back(data, tmp_path):
    class Local(Tiny):
        """Defined here: qualname test_...<locals>.Local."""

    pyro.set_rng_seed(1)
    run = pyrovae.train(Local(data.shape, hidden=6), data, out=tmp_path / "run", epochs=1,
                        **TRAIN)
    assert run.config.model.target.endswith("<locals>.Local")
    assert run.config.model.args == {"latent": 2, "hidden": 6}
    loaded = pyrovae.load(tmp_path / "run", model=Local)
    assert type(loaded.vae) is Local and loaded.vae.hidden == 6
    assert same_weights(run.vae, loaded.vae)
    elbo = pyrovae.evaluate_elbo(loaded.vae, data.test_data())["elbo"]
    assert elbo == pytest.approx(run.metrics["test_elbo"], abs=1e-9)
    with pytest.raises(ConfigError, match=r"Local was defined in a function"):
        pyrovae.load(tmp_path / "run")


def test_arguments_not_kept_refuse_a_folder_only(data, tmp_path):
    """Nothing rebuilds a run without a folder, so a module whose arguments cannot be read
    back trains (recording what it can); with ``out=`` it is refused in one line."""

    class Forgetful(Tiny):
        def __init__(self, input_shape, width):
            super().__init__(input_shape, hidden=width)

    pyro.set_rng_seed(0)
    run = pyrovae.train(Forgetful(data.shape, 8), data, epochs=1, **TRAIN)
    assert run.config.model.args == {}  # width is not kept as self.width
    with pytest.raises(ConfigError, match=r"'width' is not kept as self.width"):
        pyrovae.train(Forgetful(data.shape, 8), data, out=tmp_path / "run", epochs=1, **TRAIN)
    assert not (tmp_path / "run").exists()


def test_model_is_refused_for_a_built_in_kind(data, tmp_path):
    config = pyrovae.VAEConfig(latent_dim=2, hidden=(8,))
    pyrovae.train(config, data, out=tmp_path / "vae", epochs=1, **TRAIN)
    with pytest.raises(ConfigError, match=r"model= is for runs of a model you wrote .* "
                                          r"'vae' run, which pyrovae rebuilds itself"):
        pyrovae.load(tmp_path / "vae", model=Tiny)


# ---- wrong signatures and sites outside the data plate: one line ---------------------------


class ExtraArgument(Tiny):
    def model(self, x, labels, n_data=None):
        return super().model(x, n_data)


class TakesNothing(Tiny):
    def model(self):
        pass


class RequiredNData(Tiny):
    def guide(self, x, n_data):
        return super().guide(x, n_data)


class KeywordX(Tiny):
    def guide(self, *, x, n_data=None):
        return super().guide(x, n_data)


class NoPlate(Tiny):
    def model(self, x, n_data=None):
        z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], self.latent), 1.0).to_event(1))
        pyro.sample("x", dist.Bernoulli(logits=self.dec(z)).to_event(1), obs=x)

    def guide(self, x, n_data=None):
        loc, s = self.enc(x).chunk(2, -1)
        pyro.sample("z", dist.Normal(loc, nn.functional.softplus(s) + 1e-4).to_event(1))


class OtherPlateName(Tiny):
    def _plate(self, x, n_data):
        return pyro.plate("batch", n_data or x.shape[0], subsample=torch.arange(x.shape[0]))


class NoSubsample(Tiny):
    """A data plate of size n_data that ignores the batch: fine without n_data (evaluation),
    a shape error at the first training step."""

    def _plate(self, x, n_data):
        return pyro.plate("data", n_data or x.shape[0])


REFUSED = {
    ExtraArgument: "ExtraArgument.model(x, labels, n_data=None) requires 'labels' besides x",
    TakesNothing: "TakesNothing.model() takes no positional argument for the batch x",
    RequiredNData: "RequiredNData.guide(x, n_data) requires 'n_data' besides x",
    KeywordX: "KeywordX.guide(*, x, n_data=None) takes no positional argument",
    NoPlate: "sample site 'z' is not inside a vectorized pyro.plate named 'data'",
    OtherPlateName: "sample site 'z' is not inside a vectorized pyro.plate named 'data'",
    NoSubsample: "the plate named 'data' does not take the batch's rows as its subsample",
}
FIXES = {ExtraArgument: "model(x, n_data=None)", TakesNothing: "model(x, n_data=None)",
         RequiredNData: "guide(x, n_data=None)", KeywordX: "guide(x, n_data=None)",
         NoSubsample: 'pyro.plate("data", n_data or B, subsample=torch.arange(B))'}


@pytest.mark.parametrize("cls", list(REFUSED), ids=lambda c: c.__name__)
@pytest.mark.parametrize("elbo", ["trace", "iwae"])
def test_broken_modules_are_refused_in_one_line_before_writing(cls, elbo, data, tmp_path):
    module = cls(data.shape)
    module.elbo, module.num_particles = elbo, 1 if elbo == "trace" else 3
    out = tmp_path / "run"
    with pytest.raises(InterfaceError) as caught:
        pyrovae.train(module, data, out=out, epochs=1, **TRAIN)
    message = str(caught.value)
    assert "\n" not in message and REFUSED[cls] in message, message
    assert FIXES.get(cls, "docs/custom_models.md") in message
    assert not (out / "config.toml").exists()


BROKEN_MODULES = f'''
import pyro, pyro.distributions as dist, torch
from pyro.nn import PyroModule
from torch import nn
{TINY}

class ExtraArgument(Tiny):
    def model(self, x, labels, n_data=None):
        return super().model(x, n_data)


class NoSubsample(Tiny):
    def _plate(self, x, n_data):
        return pyro.plate("data", n_data or x.shape[0])
'''


@pytest.mark.parametrize("name", ["ExtraArgument", "NoSubsample"])
def test_cli_train_refuses_a_broken_module_in_one_line(name, tmp_path, monkeypatch, capsys):
    (tmp_path / "brokenmods.py").write_text(BROKEN_MODULES)
    (tmp_path / "broken.toml").write_text(textwrap.dedent(f"""\
        [model]
        kind = "module"
        target = "brokenmods:{name}"

        [data]
        name = "digits"
        train_size = {SIZES['train_size']}
        test_size = {SIZES['test_size']}

        [train]
        epochs = 1
        batch_size = 32
        progress = false
        """))
    monkeypatch.chdir(tmp_path)
    assert main(["train", "broken.toml", "--out", "run"]) == 2
    line = one_line_error(capsys)
    expected = {"ExtraArgument": "requires 'labels' besides x",
                "NoSubsample": "does not take the batch's rows as its subsample"}[name]
    assert expected in line
    assert not (tmp_path / "run" / "config.toml").exists()


def test_programs_without_n_data_still_train(data):
    """The interface allows model(x) and guide(x) (the trainer scales them): not refused."""

    class Unscaled(Tiny):
        def _plate(self, x, n_data=None):
            return pyro.plate("data", x.shape[0])

        def model(self, x):
            return super().model(x)

        def guide(self, x):
            return super().guide(x)

    pyro.set_rng_seed(0)
    run = pyrovae.train(Unscaled(data.shape), data, epochs=1, **TRAIN)
    assert run.metrics["test_elbo"] < 0


# ---- a notebook: the tutorial, executed headless -------------------------------------------

CHECKS = '''
import json, sys
same = all(torch.equal(a, b) for a, b in zip(run.vae.state_dict().values(),
                                             loaded.vae.state_dict().values()))
print(json.dumps({"prefix": sys.prefix, "target": run.config.model.target,
                  "in_memory_elbo": in_memory.metrics["test_elbo"],
                  "run_elbo": run.metrics["test_elbo"], "loaded_elbo": elbo["elbo"],
                  "same": same, "rebuilt": type(loaded.vae).__name__,
                  "epochs": [row["epoch"] for row in longer.history]}))
'''


def test_the_notebook_tutorial_runs_headless(tmp_path):
    """docs/tutorials/bring_your_own_model.ipynb, executed by a kernel of this venv in a
    fresh folder: the class of a cell trains without and with out=, loads back with
    pyrovae.load(RUN, model=...), evaluates, resumes, and the CLI refuses it in one line."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code")
    notebook.cells.append(nbformat.v4.new_code_cell(CHECKS))
    client = nbclient.NotebookClient(notebook, timeout=180, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    got = json.loads(notebook.cells[-1].outputs[-1]["text"].strip().splitlines()[-1])
    assert Path(got["prefix"]).resolve() == Path(sys.prefix).resolve()  # this venv's kernel
    assert got["target"] == "__main__:NotebookVAE" and got["rebuilt"] == "NotebookVAE"
    assert got["in_memory_elbo"] == got["run_elbo"] < 0 and got["same"]
    assert got["loaded_elbo"] == pytest.approx(got["run_elbo"], abs=1e-9)
    assert got["epochs"] == [1, 2, 3]
    assert (tmp_path / "runs" / "notebook-vae" / "checkpoint.pt").is_file()
    cli = next(c for c in notebook.cells if c.cell_type == "code" and "main([" in c.source)
    err = "".join(o["text"] for o in cli.outputs if o.get("name") == "stderr")
    refusal = [line for line in err.splitlines() if line.startswith("pyrovae: error:")]
    assert len(refusal) == 1 and "Traceback" not in err, err
    assert 'pyrovae.load("runs/notebook-vae", model=NotebookVAE)' in refusal[0]
    result = [o for o in cli.outputs if o["output_type"] == "execute_result"]
    assert result and result[0]["data"]["text/plain"] == "2"
