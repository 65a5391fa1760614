"""Issue 28: a run folder is data, not code.

A run folder's ``config.toml`` and checkpoint are plain data that anyone may have written; the
one thing in them that names code is ``model.target`` (``model.kind = "module"``). Here a real
module run on digits is rewritten (config.toml and the checkpoint's config, which must agree)
to name ``os:system`` with ``args = {command = "touch MARKER"}``, or a module file whose
top-level code writes a marker when it is imported. No command that opens a run folder and no
``pyrovae.load`` may import or call it without consent (``--trust-module``,
``trust_module=True``, ``model=``): each refuses in one line naming the consent, exit status 2,
and the marker is not created. With consent ``os:system`` is still refused without being called
(only a ``torch.nn.Module`` subclass is called); importing the marker module with consent is
the user's explicit choice. A genuine module run opens with each form of consent.

On the code before the fix the marker was created by every one of these commands (the
``os:system`` command ran, then "made a int, not a torch.nn.Module").
"""

from __future__ import annotations

import shlex
import shutil
import sys
import textwrap
from pathlib import Path

import pyro
import pytest
import torch

import pyrovae
from pyrovae import user_model
from pyrovae.cli import main
from pyrovae.config import RunConfig
from pyrovae.errors import ConfigError
from pyrovae.runs import config_text

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

SIZES = {"train_size": 64, "test_size": 32}
TRAIN = {"batch_size": 32, "lr": 3e-3, "progress": False}

VICTIM = "rt_victim"            # the genuine model: rt_victim.py in the work folder
EVIL_MODULE = "rt_evil_import"  # writes IMPORTED when imported, and has no module class

VICTIM_SOURCE = '''
import pyro, pyro.distributions as dist, torch
from pyro.nn import PyroModule
from torch import nn


class TinyVAE(PyroModule):
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
'''

EVIL_SOURCE = '''
from pathlib import Path

Path({marker!r}).write_text("imported")  # top-level code: runs when the module is imported


def Model(input_shape=None, **kwargs):  # a factory function, not a module class
    Path({marker!r}).write_text("called")
'''

#: every command that opens a run folder given as RUN_DIR (pyrovae/cli/main.py COMMANDS:
#: compare and reproduce open theirs below)
RUN_COMMANDS = {
    "evaluate": ["evaluate", "{run}", "--nll-samples", "25", "--quiet", "--out", "{out}"],
    "export": ["export", "{run}", "--arviz", "{out}/x.nc", "--draws", "25"],
    "sample": ["sample", "{run}", "--out", "{out}"],
    "reconstruct": ["reconstruct", "{run}", "--out", "{out}"],
    "interpolate": ["interpolate", "{run}", "--out", "{out}"],
    "traverse": ["traverse", "{run}", "--out", "{out}"],
    "latent-map": ["latent-map", "{run}", "--out", "{out}"],
    "anomaly": ["anomaly", "{run}", "--out", "{out}"],
    "impute": ["impute", "{run}", "--out", "{out}"],
    "train --resume": ["train", "--resume", "{run}", "--set", "epochs=2"],
}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The working folder (current folder, importable) holding rt_victim.py and the evil
    module, with the markers' paths."""
    folder = tmp_path_factory.mktemp("redteam")
    (folder / f"{VICTIM}.py").write_text(VICTIM_SOURCE)
    (folder / f"{EVIL_MODULE}.py").write_text(
        EVIL_SOURCE.format(marker=str(folder / "IMPORTED")))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.syspath_prepend(str(folder))
        yield folder


@pytest.fixture(autouse=True)
def clean(work, monkeypatch):
    """No marker, the evil module not imported, and no target consented by an earlier test
    (a target this process built counts as consented: pyrovae/kinds/module/model.py)."""
    for name in ("PWNED", "IMPORTED"):
        (work / name).unlink(missing_ok=True)
    sys.modules.pop(EVIL_MODULE, None)
    monkeypatch.setattr(user_model, "_BUILT_TARGETS", set(), raising=False)
    yield
    sys.modules.pop(EVIL_MODULE, None)


@pytest.fixture(scope="module")
def data():
    return pyrovae.load_dataset("digits", binarize="dynamic", **SIZES)


@pytest.fixture(scope="module")
def good(work, data):
    """A genuine module run (rt_victim:TinyVAE), trained one epoch through pyrovae.train."""
    import rt_victim

    pyro.set_rng_seed(0)
    run = pyrovae.train(rt_victim.TinyVAE(data.shape), data, out=work / "good", epochs=1,
                        **TRAIN)
    assert run.config.model.target == f"{VICTIM}:TinyVAE"
    return run.path


def crafted(good: Path, dest: Path, target: str, args: dict) -> Path:
    """A copy of the run ``good`` whose config.toml and checkpoint name ``target(**args)``:
    plain data, as anyone could write it."""
    shutil.copytree(good, dest)
    payload = torch.load(dest / "checkpoint.pt", weights_only=True)
    payload["config"]["model"].update(target=target, args=args)
    torch.save(payload, dest / "checkpoint.pt")
    (dest / "config.toml").write_text(config_text(RunConfig.from_dict(payload["config"])))
    return dest


@pytest.fixture(scope="module")
def evil(work, good):
    """variant -> (run folder, its marker): ``system`` names os:system with a command that
    creates PWNED; ``import`` names a module whose import creates IMPORTED."""
    pwned = shlex.quote(str(work / "PWNED"))
    return {"system": (crafted(good, work / "evil-system", "os:system",
                               {"command": f"touch {pwned}"}), work / "PWNED"),
            "import": (crafted(good, work / "evil-import", f"{EVIL_MODULE}:Model", {}),
                       work / "IMPORTED")}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("pyrovae: error: "), err
    return lines[0]


def assert_untouched(marker: Path) -> None:
    assert not marker.exists(), f"{marker.name} was created: code from the run folder ran"
    assert EVIL_MODULE not in sys.modules, "the module the run folder names was imported"


def command(name: str, run: Path, out: Path) -> list[str]:
    return [word.format(run=run, out=out) for word in RUN_COMMANDS[name]]


# ---- without consent: nothing is imported, one line names the consent ------------------------


@pytest.mark.parametrize("variant", ["system", "import"])
@pytest.mark.parametrize("name", list(RUN_COMMANDS))
def test_no_command_runs_code_a_run_folder_names(evil, variant, name, tmp_path, capsys):
    run, marker = evil[variant]
    assert main(command(name, run, tmp_path)) == 2
    line = one_line_error(capsys)
    assert_untouched(marker)
    target = "os:system" if variant == "system" else f"{EVIL_MODULE}:Model"
    assert f"model.target = '{target}'" in line and "--trust-module" in line, line


@pytest.mark.parametrize("variant", ["system", "import"])
def test_load_runs_no_code_a_run_folder_names(evil, variant):
    run, marker = evil[variant]
    with pytest.raises(ConfigError) as info:
        pyrovae.load(run)
    assert_untouched(marker)
    message = str(info.value)
    assert "\n" not in message
    assert "trust_module=True" in message and "model=" in message and "--trust-module" in message


@pytest.mark.parametrize("variant", ["system", "import"])
def test_train_resume_api_runs_no_code_a_run_folder_names(evil, variant, data):
    """``pyrovae.train(config, data, out=RUN, resume=True)`` with the folder's own config."""
    run, marker = evil[variant]
    config = pyrovae.load_config(run / "config.toml")
    with pytest.raises(ConfigError) as info:
        pyrovae.train(config, data, out=run, resume=True)
    assert_untouched(marker)
    assert "--trust-module" in str(info.value) and "resume=True" in str(info.value)


def test_compare_trains_from_your_config_and_resuming_it_needs_consent(work, tmp_path, capsys):
    """``compare CONFIG`` trains from the config you pass (consent to its target, also to read
    back the runs it wrote); ``compare CONFIG --resume`` in a new process reopens run folders
    (compare refuses one whose config.toml differs from its plan), which needs consent."""
    config = tmp_path / "mine.toml"
    config.write_text(textwrap.dedent(f"""\
        [model]
        kind = "module"
        target = "{VICTIM}:TinyVAE"
        [data]
        name = "digits"
        binarize = "dynamic"
        train_size = {SIZES['train_size']}
        test_size = {SIZES['test_size']}
        [train]
        epochs = 1
        batch_size = 32
        progress = false
        """))
    out = tmp_path / "cmp"
    args = ["compare", str(config), "--vary", "elbo=trace,iwae+num_particles=2",
            "--nll-samples", "25", "--grad-draws", "2", "--out", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    capsys.readouterr()
    for name in ("compare.csv", "gradients.csv"):  # the runs are trained, not yet measured
        (out / name).unlink(missing_ok=True)
    user_model._BUILT_TARGETS.clear()  # (as in a new process)
    assert main([*args, "--resume"]) == 2
    line = capsys.readouterr().err.strip("\n").split("\n")[-1]  # (after compare's log lines)
    assert line.startswith("pyrovae: error: run elbo-trace_seed0 failed: "), line
    assert f"model.target = '{VICTIM}:TinyVAE'" in line and "--trust-module" in line, line
    assert main([*args, "--resume", "--trust-module"]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("variant", ["system", "import"])
def test_reproduce_runs_no_code_its_run_folder_names(evil, variant, tmp_path, capsys):
    run, marker = evil[variant]
    shutil.copytree(run, tmp_path / "burda-vae-1")
    assert main(["reproduce", "burda-vae-1", "--out", str(tmp_path), "--set",
                 'data.name="digits"', "--quiet"]) == 2
    line = one_line_error(capsys)
    assert_untouched(marker)
    assert "--trust-module" in line, line


# ---- with consent: still only a torch.nn.Module class is called -----------------------------


@pytest.mark.parametrize("name", ["sample", "train --resume"])
def test_with_consent_os_system_is_refused_without_being_called(evil, name, tmp_path, capsys):
    run, marker = evil["system"]
    assert main([*command(name, run, tmp_path), "--trust-module"]) == 2
    line = one_line_error(capsys)
    assert not marker.exists()
    assert "model.target = 'os:system' is a builtin_function_or_method, not a " \
           "torch.nn.Module class" in line, line
    assert not marker.exists()
    with pytest.raises(ConfigError, match="not a torch.nn.Module class"):
        pyrovae.load(run, trust_module=True)
    assert not marker.exists()


def test_with_consent_a_function_is_imported_but_never_called(evil):
    """Importing what the run names is what consent allows (the user's choice); calling
    anything but a module class is not: a factory function from a run folder is refused."""
    run, marker = evil["import"]
    with pytest.raises(ConfigError, match="is a function, not a torch.nn.Module class"):
        pyrovae.load(run, trust_module=True)
    assert marker.read_text() == "imported"  # imported with consent; Model(...) not called


def test_a_config_you_pass_cannot_call_os_system_either(work, tmp_path, capsys):
    """Training from a config you wrote is consent to import its target, yet the target must
    be a module class: ``os:system`` is refused without being called."""
    pwned = shlex.quote(str(work / "PWNED"))
    config = tmp_path / "mine.toml"
    config.write_text(textwrap.dedent(f"""\
        [model]
        kind = "module"
        target = "os:system"
        args = {{command = "touch {pwned}"}}
        [data]
        name = "digits"
        train_size = {SIZES['train_size']}
        test_size = {SIZES['test_size']}
        """))
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 2
    line = one_line_error(capsys)
    assert not (work / "PWNED").exists()
    assert "not a torch.nn.Module class" in line, line


# ---- a genuine module run: refused without consent, opened with each form of it -------------


def test_a_genuine_module_run_needs_consent_and_opens_with_it(good, work, data, tmp_path,
                                                              capsys):
    import rt_victim

    with pytest.raises(ConfigError, match="trust_module=True") as info:
        pyrovae.load(good)
    assert f"model.target = '{VICTIM}:TinyVAE'" in str(info.value)
    assert "model=TinyVAE" in str(info.value)
    assert main(["evaluate", str(good), "--nll-samples", "25", "--quiet", "--out",
                 str(tmp_path / "no")]) == 2
    assert "--trust-module" in one_line_error(capsys)
    assert not (tmp_path / "no" / "eval.json").exists()

    trained = torch.load(good / "checkpoint.pt", weights_only=True)["model"]
    for run in (pyrovae.load(good, trust_module=True),
                pyrovae.load(good, model=rt_victim.TinyVAE)):
        assert type(run.vae) is rt_victim.TinyVAE
        for key, value in run.vae.state_dict().items():
            assert torch.equal(value, trained[key]), key

    user_model._BUILT_TARGETS.clear()  # (the loads above consented for this process)
    assert main(["evaluate", str(good), "--nll-samples", "25", "--quiet", "--trust-module",
                 "--out", str(tmp_path / "yes")]) == 0, capsys.readouterr().err
    assert (tmp_path / "yes" / "eval.json").is_file()
    user_model._BUILT_TARGETS.clear()
    resumed = shutil.copytree(good, tmp_path / "resumed")
    assert main(["train", "--resume", str(resumed), "--set", "epochs=2",
                 "--trust-module"]) == 0, capsys.readouterr().err
    assert [int(r["epoch"]) for r in pyrovae.load(resumed, trust_module=True).history] == [1, 2]
    resumed_api = shutil.copytree(good, tmp_path / "resumed-api")
    run = pyrovae.train(rt_victim.TinyVAE, data, out=resumed_api, resume=True, epochs=2,
                        **TRAIN)  # model=: the class itself is consent
    assert [int(r["epoch"]) for r in run.history] == [1, 2]


def test_trust_module_is_an_option_of_every_command():
    from pyrovae.cli.main import COMMANDS, build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    for name in COMMANDS:
        sub = subparsers[name.replace("_", "-")]
        assert "--trust-module" in sub.format_help(), name
