"""Issue 28: a user's module that fails after import, and a kill during the first save.

A module named by ``model.kind = "module"`` runs inside pyrovae once its file is found: a syntax
error in that file, an ``__init__`` that raises, a ``model()`` that raises at step 16 and a
model whose likelihood is NaN from the first step each end ``pyrovae train CONFIG`` with ONE
line naming the module and the ``file:line`` where it failed (the NaN: the NaN guard's line,
without Pyro's "Encountered NaN" warnings before it), exit status 2, and no half-made run
folder (a folder this call made that holds no checkpoint is removed; one that existed before,
or that holds a checkpoint, is kept). A process killed while writing its first checkpoint
leaves a folder that ``--resume`` recognises in one line (and whose temporary file it removes).

On the code before the fix: tracebacks of 31 to 96 lines (exit status 1) and a folder with
config.toml alone that the next ``train`` refused without --force; NaN at step 15 printed
Pyro's warnings before the guard's line; ``--resume`` after the kill said "no checkpoint ...:
is this a pyrovae run folder?" and left the 75 MB-class temporary file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pyrovae
from pyrovae.cli import main
from pyrovae.errors import CheckpointError, PyroVAEError

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

ROOT = Path(__file__).resolve().parents[2]
MODS = "rt_failing_mods"

MODS_SOURCE = '''
import pyro, pyro.distributions as dist, torch
from pyro.nn import PyroModule
from torch import nn


class Tiny(PyroModule):
    def __init__(self, input_shape, latent=2, hidden=8):
        super().__init__()
        self.input_shape, self.latent, self.hidden = tuple(input_shape), latent, hidden
        self.enc = nn.Sequential(nn.Linear(64, hidden), nn.Tanh(), nn.Linear(hidden, 2 * latent))
        self.dec = nn.Sequential(nn.Linear(latent, hidden), nn.Tanh(), nn.Linear(hidden, 64))
        self.calls = 0

    def _plate(self, x, n_data):
        return pyro.plate("data", n_data or x.shape[0], subsample=torch.arange(x.shape[0]))

    def logits(self, z):
        return self.dec(z)

    def model(self, x, n_data=None):
        with self._plate(x, n_data):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.latent), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.logits(z)).to_event(1), obs=x)

    def guide(self, x, n_data=None):
        with self._plate(x, n_data):
            loc, s = self.enc(x).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, nn.functional.softplus(s) + 1e-4).to_event(1))


class InitRaises(Tiny):
    def __init__(self, input_shape, latent=2, hidden=8):
        super().__init__(input_shape, latent, hidden)
        raise ValueError("hidden must be a power of two")  # INIT-LINE


class RaisesAt16(Tiny):
    def model(self, x, n_data=None):
        if self.training:  # (the check run before training and the evaluations: eval mode)
            self.calls += 1
            if self.calls == 16:
                raise RuntimeError("boom at step 16")  # STEP-LINE
        super().model(x, n_data)


class NaNFirst(Tiny):
    def logits(self, z):
        return self.dec(z) * float("nan") if self.training else self.dec(z)


class NaNAt15(Tiny):
    def logits(self, z):
        if self.training:
            self.calls += 1
        return self.dec(z) * float("nan") if self.training and self.calls >= 15 else self.dec(z)
'''

SYNTAX_SOURCE = "import torch\n\ndef broken(:\n    pass\n"  # line 3


def line_of(marker: str) -> int:
    return next(i for i, line in enumerate(MODS_SOURCE.splitlines(), 1) if marker in line)


def config_text(target: str, train_size: int = 256, batch_size: int = 32, epochs: int = 2,
                elbo: str = "trace") -> str:
    return textwrap.dedent(f"""\
        [model]
        kind = "module"
        target = "{target}"
        args = {{latent = 2, hidden = 8}}
        elbo = "{elbo}"

        [data]
        name = "digits"
        binarize = "dynamic"
        train_size = {train_size}
        test_size = 64

        [train]
        epochs = {epochs}
        batch_size = {batch_size}
        lr = 3e-3
        progress = false
        """)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The current folder, importable, holding the modules (as a user runs `pyrovae` from the
    folder of their model)."""
    folder = tmp_path_factory.mktemp("failing")
    (folder / f"{MODS}.py").write_text(MODS_SOURCE)
    (folder / "rt_syntax_error.py").write_text(SYNTAX_SOURCE)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.syspath_prepend(str(folder))
        yield folder


def write_config(work: Path, name: str, target: str, **options) -> Path:
    path = work / f"{name}.toml"
    path.write_text(config_text(target, **options))
    return path


def one_line(err: str) -> str:
    assert "Traceback" not in err and "Warning" not in err, err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("pyrovae: error: "), err
    return lines[0]


def cli_train(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    status = main(["train", *map(str, args)])
    return status, capsys.readouterr().err


# ---- a module failing after import: one line, exit 2, no run folder -----------------------


def test_syntax_error_in_the_module_file(work, capsys):
    config = write_config(work, "syntax", "rt_syntax_error:Model")
    status, err = cli_train(capsys, config)  # (default --out: runs/syntax, runs/ not there)
    assert status == 2
    line = one_line(err)
    assert "rt_syntax_error:Model" in line and "rt_syntax_error.py:3" in line, line
    assert "SyntaxError" in line and "imported" in line, line
    assert not (work / "runs").exists()


def test_init_raising(work, capsys):
    config = write_config(work, "init", f"{MODS}:InitRaises")
    out = work / "init-run"
    status, err = cli_train(capsys, config, "--out", out)
    assert status == 2
    line = one_line(err)
    assert f"{MODS}:InitRaises" in line and f"{MODS}.py:{line_of('INIT-LINE')}" in line, line
    assert "__init__" in line and "ValueError: hidden must be a power of two" in line, line
    assert not out.exists()


def test_model_raising_at_step_16_leaves_no_run_folder(work, capsys):
    """32 steps an epoch (256 rows, batches of 8): step 16 comes before the first checkpoint."""
    config = write_config(work, "step16", f"{MODS}:RaisesAt16", batch_size=8)
    out = work / "deep" / "step16-run"  # its parent is made by this call too
    status, err = cli_train(capsys, config, "--out", out)
    assert status == 2
    line = one_line(err)
    assert f"{MODS}:RaisesAt16" in line and f"{MODS}.py:{line_of('STEP-LINE')}" in line, line
    assert "step 16" in line and "model()" in line and "boom at step 16" in line, line
    assert not out.exists() and not (work / "deep").exists()
    # nothing left to refuse: the same command, the model fixed, trains without --force
    fixed = write_config(work, "fixed", f"{MODS}:Tiny", batch_size=8, epochs=1)
    assert main(["train", str(fixed), "--out", str(out)]) == 0
    assert (out / "checkpoint.pt").is_file()


def test_model_raising_after_a_checkpoint_keeps_the_resumable_folder(work, capsys):
    """8 steps an epoch: step 16 is in epoch 2, after epoch 1's checkpoint; the folder is kept
    and the line says how to resume it."""
    config = write_config(work, "step16-late", f"{MODS}:RaisesAt16", epochs=3)
    out = work / "step16-late-run"
    status, err = cli_train(capsys, config, "--out", out)
    assert status == 2
    line = one_line(err)
    assert "step 16" in line and f"pyrovae train --resume {out}" in line, line
    assert (out / "checkpoint.pt").is_file() and (out / "config.toml").is_file()


def test_a_folder_that_existed_is_kept_with_its_other_files(work, capsys):
    out = work / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    config = write_config(work, "step16-mine", f"{MODS}:RaisesAt16", batch_size=8)
    status, err = cli_train(capsys, config, "--out", out)
    assert status == 2 and "step 16" in one_line(err)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_nan_from_the_first_step_is_the_guards_line(work, capsys):
    config = write_config(work, "nan1", f"{MODS}:NaNFirst")
    out = work / "nan1-run"
    status, err = cli_train(capsys, config, "--out", out)
    assert status == 2
    line = one_line(err)
    assert "training stopped: the loss became NaN/inf at step 1" in line, line
    assert "model.x" in line and "before any update" in line, line
    assert not out.exists()


def test_the_api_raises_one_line_pyrovae_errors(work, capsys):
    import rt_failing_mods as mods

    data = pyrovae.load_dataset("digits", binarize="dynamic", train_size=256, test_size=64)
    out = work / "api-run"
    with pytest.raises(PyroVAEError) as info:
        pyrovae.train(mods.RaisesAt16(data.shape), data, out=out, epochs=1, batch_size=8,
                      progress=False)
    message = str(info.value)
    assert "\n" not in message and "step 16" in message, message
    assert f"{MODS}.py:{line_of('STEP-LINE')}" in message, message
    assert isinstance(info.value.__cause__, RuntimeError)  # the original, for a debugger
    assert not out.exists()
    with pytest.raises(PyroVAEError, match="at step 1;") as info:
        pyrovae.train(mods.NaNFirst(data.shape), data, out=out, epochs=1, progress=False)
    assert "\n" not in str(info.value) and not out.exists()


# ---- stderr of the real command: the guard's line alone ----------------------------------


def run_cli(work: Path, *args, prelude: str = "") -> subprocess.CompletedProcess:
    """``pyrovae ARGS`` in a fresh process in ``work`` (``prelude``: Python run first)."""
    code = prelude + ("\nimport sys\nfrom pyrovae.cli.main import main\n"
                      "sys.exit(main(sys.argv[1:]))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(work)]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("cls, step", [("NaNFirst", 1), ("NaNAt15", 15)])
def test_nan_prints_no_pyro_warnings(work, cls, step):
    config = write_config(work, f"nan-{cls}", f"{MODS}:{cls}", epochs=3)
    done = run_cli(work, "train", config, "--out", work / f"nan-{cls}-run")
    assert done.returncode == 2, done.stderr
    line = one_line(done.stderr)
    assert f"the loss became NaN/inf at step {step}" in line, line


# ---- killed during the first checkpoint write --------------------------------------------

KILL_AT_FIRST_CHECKPOINT = '''
import os
_replace = os.replace
def _killed(src, dst, *args, **kwargs):  # SIGKILL between writing the file and renaming it
    if str(dst).endswith("checkpoint.pt"):
        os._exit(137)
    return _replace(src, dst, *args, **kwargs)
os.replace = _killed
'''


def test_kill_during_the_first_checkpoint_write(work, capsys):
    config = write_config(work, "killed", f"{MODS}:Tiny", epochs=1)
    out = work / "killed-run"
    done = run_cli(work, "train", config, "--out", out, prelude=KILL_AT_FIRST_CHECKPOINT)
    assert done.returncode == 137, done.stderr
    temp = [p.name for p in out.iterdir() if p.name.startswith(".checkpoint.pt.")]
    assert len(temp) == 1 and not (out / "checkpoint.pt").exists()  # what SIGKILL leaves

    status, err = cli_train(capsys, "--resume", out)
    assert status == 2
    line = one_line(err)
    assert "has no checkpoint yet" in line and "before its first save" in line, line
    assert f"pyrovae train {out / 'config.toml'} --out {out} --force" in line, line
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # the temporary file

    with pytest.raises(CheckpointError, match="has no checkpoint yet") as info:
        pyrovae.load(out)
    assert "\n" not in str(info.value)
    status, err = cli_train(capsys, config, "--out", out)  # without --force: says why, once
    assert status == 2 and "before its first save" in one_line(err)
    assert main(["train", str(out / "config.toml"), "--out", str(out), "--force"]) == 0
    assert (out / "checkpoint.pt").is_file()


def test_interrupted_first_checkpoint_write_leaves_nothing(work, capsys, monkeypatch):
    """A KeyboardInterrupt inside the first checkpoint's write (a second Ctrl-C): its
    temporary file is removed and, there being no checkpoint, so is the folder it made."""
    replace = os.replace

    def interrupted(src, dst, *args, **kwargs):
        if str(dst).endswith("checkpoint.pt"):
            raise KeyboardInterrupt
        return replace(src, dst, *args, **kwargs)

    config = write_config(work, "interrupted", f"{MODS}:Tiny", epochs=1)
    out = work / "interrupted-run"
    monkeypatch.setattr(os, "replace", interrupted)
    status, err = cli_train(capsys, config, "--out", out)
    assert status == 130 and err.strip() == "pyrovae: interrupted", err
    assert not out.exists()
