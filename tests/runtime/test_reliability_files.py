"""Every command as hardened as training (issue 15): a failed write is one line and loses
nothing, ``--force`` leaves nothing of the old run, damaged derived files do not break a run,
signals during the end-of-run reports, stale temporary files, and resuming onto changed data.

Tests run as root, where chmod does not stop writes: a read-only file system and a full disk
are simulated by patching the system calls (``os.open``, ``os.mkdir``, ``os.replace``,
``os.fsync``, ``open``) for paths inside one folder; a path under a regular file is real."""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import pyrovae
from pyrovae.cli import main
from pyrovae.runtime.files import TEMP_PATTERN, WriteError, atomic_write, read_csv
from pyrovae.runs import load_checkpoint, save_checkpoint
from pyrovae.runs.folder import RUN_FOLDER, RUN_FOLDER_FILES, RunFolderWarning

ROOT = Path(__file__).resolve().parents[2]
DIGITS = str(ROOT / "configs" / "digits.toml")
SMALL = ["--set", "epochs=1", "--set", "progress=false", "--set", "data.train_size=300",
         "--set", "data.test_size=100"]
TRAIN_FILES = {"config.toml", "checkpoint.pt", "metrics.json", "history.csv", "samples.png",
               "reconstructions.png", "elbo.png", "README.md"}
#: every command on a run, with small settings; "{run}" is the run folder
COMMANDS = {
    "evaluate": ["--nll-samples", "30", "--points", "20", "--quiet"],
    "export": ["--arviz", "{run}/post.nc", "--points", "0-3", "--draws", "30"],
    "sample": ["--n", "8"],
    "reconstruct": ["--n", "4"],
    "interpolate": ["--steps", "3"],
    "traverse": ["--top", "2", "--steps", "3"],
    "latent-map": [],
    "anomaly": ["--labels-anomalous", "9", "--samples", "2", "--no-progress"],
    "impute": ["--n", "4", "--eval-n", "10", "--samples", "10", "--gibbs-steps", "2",
               "--no-progress"],
}
COMPARE = ["--vary", "elbo=meanfield", *SMALL, "--nll-samples", "25", "--eval-points", "10",
           "--grad-draws", "2"]

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def command(name: str, run: Path, *extra: str) -> list[str]:
    return [name, str(run), *(a.format(run=run) for a in COMMANDS[name]), *extra]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("pyrovae: error: "), err
    assert "Traceback" not in err and "corrupt" not in err, err
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden and temporary ones too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def inject(monkeypatch, folder: Path, fault: str) -> None:
    """Make writes inside ``folder`` fail as on a read-only file system ("erofs") or a full
    disk ("enospc"); reads and everything outside ``folder`` work as usual."""
    root = os.path.realpath(folder)

    def inside(path) -> bool:
        if isinstance(path, int):
            return False
        real = os.path.realpath(os.fsdecode(os.fspath(path)))
        return real == root or real.startswith(root + os.sep)

    def fail(code, path):
        raise OSError(code, os.strerror(code), os.fspath(path))

    real_replace = os.replace
    if fault == "erofs":
        real_open, real_mkdir, real_builtin_open = os.open, os.mkdir, builtins.open
        writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

        def fake_open(path, flags, *a, **k):
            if flags & writing and inside(path):
                fail(errno.EROFS, path)
            return real_open(path, flags, *a, **k)

        def fake_mkdir(path, *a, **k):
            if inside(path):
                fail(errno.EEXIST if os.path.exists(path) else errno.EROFS, path)
            return real_mkdir(path, *a, **k)

        def fake_builtin_open(file, mode="r", *a, **k):
            if not isinstance(file, int) and set(mode) & set("wax+") and inside(file):
                fail(errno.EROFS, file)
            return real_builtin_open(file, mode, *a, **k)

        def fake_replace(src, dst, *a, **k):
            if inside(dst):
                fail(errno.EROFS, dst)
            return real_replace(src, dst, *a, **k)

        monkeypatch.setattr(os, "open", fake_open)
        monkeypatch.setattr(os, "mkdir", fake_mkdir)
        monkeypatch.setattr(builtins, "open", fake_builtin_open)
        monkeypatch.setattr(io, "open", fake_builtin_open)
        monkeypatch.setattr(os, "replace", fake_replace)
    else:
        def full_fsync(fd):
            fail(errno.ENOSPC, f"<fd {fd}>")

        def full_replace(src, dst, *a, **k):
            if inside(dst):
                fail(errno.ENOSPC, dst)
            return real_replace(src, dst, *a, **k)

        monkeypatch.setattr(os, "fsync", full_fsync)
        monkeypatch.setattr(os, "replace", full_replace)


REASONS = {"erofs": "Read-only file system", "enospc": "No space left on device"}


@pytest.fixture(scope="module")
def fresh_run(tmp_path_factory):
    """A tiny digits run (1 epoch, 300 training examples): training's files only."""
    out = tmp_path_factory.mktemp("fresh") / "run"
    assert main(["train", DIGITS, *SMALL, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def used_run(fresh_run, tmp_path_factory):
    """The same run after every command wrote its files into it (export: post.nc)."""
    out = tmp_path_factory.mktemp("used") / "run"
    shutil.copytree(fresh_run, out)
    for name in COMMANDS:
        assert main(command(name, out)) == 0, name
    return out


def copy_of(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


# ---- 1. a failed write: one line, nothing lost --------------------------------------------

@pytest.mark.parametrize("fault", ["erofs", "enospc"])
@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_command_that_cannot_write_says_so_in_one_line_and_changes_nothing(
        name, fault, used_run, tmp_path, monkeypatch, capsys):
    run = copy_of(used_run, tmp_path)
    before = snapshot(run)
    capsys.readouterr()
    inject(monkeypatch, run, fault)
    status = main(command(name, run))
    monkeypatch.undo()
    line = one_line_error(capsys)
    assert status == 2
    assert REASONS[fault] in line and str(run) in line, line
    assert snapshot(run) == before  # same files, same bytes, no temporary file left


@pytest.mark.parametrize("name", list(COMMANDS))
def test_an_output_path_under_a_file_is_one_line(name, fresh_run, tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("keep me")
    before = snapshot(fresh_run)
    if name == "export":
        args = command(name, fresh_run, "--arviz", str(blocker / "sub" / "post.nc"))
    else:
        args = command(name, fresh_run, "--out", str(blocker / "sub"))
    assert main(args) == 2
    line = one_line_error(capsys)
    assert "afile" in line and "Not a directory" in line, line
    assert blocker.read_text() == "keep me" and snapshot(fresh_run) == before


def test_an_output_folder_that_is_a_file_is_one_line(fresh_run, tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("keep me")
    assert main(command("sample", fresh_run, "--out", str(blocker))) == 2
    assert "is a file, not a folder" in one_line_error(capsys)
    assert blocker.read_text() == "keep me"


@pytest.fixture(scope="module")
def compare_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "out"
    assert main(["compare", DIGITS, *COMPARE, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("fault", ["erofs", "enospc", "under a file"])
def test_compare_that_cannot_write_is_one_line(fault, compare_out, tmp_path, monkeypatch,
                                               capsys):
    out = tmp_path / "out"
    shutil.copytree(compare_out, out)
    before = snapshot(out)
    capsys.readouterr()
    if fault == "under a file":
        (tmp_path / "afile").write_text("keep me")
        status = main(["compare", DIGITS, *COMPARE, "--out", str(tmp_path / "afile" / "sub")])
    else:
        inject(monkeypatch, out, fault)
        status = main(["compare", DIGITS, *COMPARE, "--resume", "--out", str(out)])
        monkeypatch.undo()
    line = one_line_error(capsys)
    assert status == 2
    assert {"erofs": "Read-only", "enospc": "No space", "under a file": "Not a directory"}[
        fault] in line, line
    assert snapshot(out) == before


def test_write_error_is_an_os_error_naming_the_file_and_leaving_it_whole(tmp_path,
                                                                          monkeypatch):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    inject(monkeypatch, tmp_path, "enospc")
    with pytest.raises(WriteError) as info:
        atomic_write(target, "new")
    monkeypatch.undo()
    err = info.value
    assert isinstance(err, OSError) and err.errno == errno.ENOSPC
    assert err.filename == str(target)
    assert str(err).startswith(f"could not write '{target}' (No space left on device); "
                               f"nothing was overwritten")
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    assert target.read_text() == "old"


def test_train_names_the_picture_it_could_not_write(tmp_path, monkeypatch, capsys):
    """The end-of-run reports on a full disk (row 98): the message names the file."""
    import pyrovae.reports.plots as plots

    def full(path, data):
        real = os.fsync
        monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(
            OSError(errno.ENOSPC, "No space left on device")))
        try:
            atomic_write(path, data)
        finally:
            monkeypatch.setattr(os, "fsync", real)

    monkeypatch.setattr(plots, "atomic_write", full)
    assert main(["train", DIGITS, *SMALL, "--out", str(tmp_path / "run")]) == 2
    line = one_line_error(capsys)
    assert "samples.png' at step 4 (No space left on device)" in line, line
    assert "previous checkpoint is intact" in line, line
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


# ---- 2. run folders: --force, damaged derived files ---------------------------------------

def test_every_file_the_commands_write_is_in_the_run_folder_list(used_run):
    import fnmatch

    names = [p.name for p in used_run.iterdir()]
    unknown = [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in RUN_FOLDER_FILES)]
    assert unknown == []
    assert set(RUN_FOLDER["train"]) >= TRAIN_FILES


def test_force_leaves_nothing_of_the_old_run(used_run, tmp_path, capsys):
    run = copy_of(used_run, tmp_path)
    (run / "notes.txt").write_text("mine")  # not pyrovae's: kept
    (run / ".eval.json.abcd1234.tmp").write_text("half")  # a killed command's write
    assert len(list(run.iterdir())) > len(TRAIN_FILES) + 10
    assert main(["train", DIGITS, *SMALL, "--set", "latent_dim=3", "--force",
                 "--out", str(run)]) == 0
    assert sorted(p.name for p in run.iterdir()) == sorted(TRAIN_FILES | {"notes.txt"})
    assert (run / "notes.txt").read_text() == "mine"
    assert pyrovae.load(run).config.model.latent_dim == 3


def damage(run: Path) -> None:
    text = (run / "metrics.json").read_text()
    (run / "metrics.json").write_text(text[:len(text) // 2])  # truncated
    (run / "history.csv").write_bytes(b"epoch,st\x00ep\n\xff\xfe,1,2,3\n")  # garbled


def test_load_survives_a_truncated_metrics_json_and_a_garbled_history_csv(fresh_run,
                                                                          tmp_path):
    run = copy_of(fresh_run, tmp_path)
    good = pyrovae.load(run)
    damage(run)
    with pytest.warns(RunFolderWarning, match="metrics.json' is unreadable or damaged"):
        loaded = pyrovae.load(run)
    assert loaded.history == load_checkpoint(run)["history"] == good.history
    for key in ("train_elbo", "test_elbo", "test_kl", "epochs", "steps", "data_sha256"):
        assert loaded.metrics[key] == good.metrics[key], key
    assert loaded.metrics["rebuilt_from_checkpoint"] is True


def test_metrics_of_another_step_are_not_believed(fresh_run, tmp_path):
    run = copy_of(fresh_run, tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "steps": 999}))
    with pytest.warns(RunFolderWarning, match="describes step 999, but the checkpoint is at"):
        assert pyrovae.load(run).metrics["steps"] == metrics["steps"]


def test_commands_and_resume_survive_damaged_derived_files(fresh_run, tmp_path, capsys):
    run = copy_of(fresh_run, tmp_path)
    damage(run)
    for name in COMMANDS:
        status = main(command(name, run))
        err = capsys.readouterr().err
        assert status == 0, (name, err)
        assert err.startswith("pyrovae: warning: ") and "Traceback" not in err, (name, err)
    assert main(["train", "--resume", str(run)]) == 0  # rewrites both from the checkpoint
    assert "warning" not in capsys.readouterr().err
    history = load_checkpoint(run)["history"]
    assert read_csv(run / "history.csv") == history
    assert json.loads((run / "metrics.json").read_text())["steps"] == history[-1]["step"]


# ---- 3. signals around the end-of-run reports; stale temporary files ----------------------

@pytest.fixture
def sigterm_is_a_failure():
    """Without pyrovae's guard a SIGTERM would end the test process: make it an error."""
    def unguarded(signum, frame):
        raise RuntimeError("SIGTERM reached the default handler (no guard)")

    old = signal.signal(signal.SIGTERM, unguarded)
    yield
    signal.signal(signal.SIGTERM, old)


@pytest.mark.parametrize("signals", [1, 2])
def test_sigterm_during_the_reports_is_one_line_and_leaves_a_usable_folder(
        signals, sigterm_is_a_failure, tmp_path, monkeypatch, capsys):
    import pyrovae.api as trainer_module  # (write_reports: the reports callback)

    real = trainer_module.write_reports

    def reports(run, data):
        for _ in range(signals):  # a second signal while the first is handled: stop now
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)
        real(run, data)

    monkeypatch.setattr(trainer_module, "write_reports", reports)
    out = tmp_path / "run"
    assert main(["train", DIGITS, *SMALL, "--out", str(out)]) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    lines = err.strip().split("\n")
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("pyrovae: training interrupted while writing the end-of-run "
                               "reports"), err
    monkeypatch.undo()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    if signals == 1:  # the reports were finished first: a complete run
        assert "complete" in lines[0]
        assert TRAIN_FILES <= {p.name for p in out.iterdir()}
        assert pyrovae.load(out).metrics["steps"] == load_checkpoint(out)["step"]
    else:  # cut short: the checkpoint is whole and resuming writes the reports
        assert f"resume {out}" in lines[0]
        assert main(["train", "--resume", str(out)]) == 0
        assert TRAIN_FILES <= {p.name for p in out.iterdir()}


def stray_temp(folder: Path, name: str, age: float = 0.0) -> Path:
    """A temporary file named as ``atomic_write`` names them, as a kill -9 leaves it."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    os.write(fd, b"half a file")
    os.close(fd)
    if age:
        past = time.time() - age
        os.utime(tmp, (past, past))
    assert TEMP_PATTERN.match(Path(tmp).name)
    return Path(tmp)


def test_resume_removes_stale_temporary_files_and_nothing_else(fresh_run, tmp_path):
    run = copy_of(fresh_run, tmp_path)
    stale = [stray_temp(run, "checkpoint.pt"), stray_temp(run, "metrics.json"),
             stray_temp(run, "eval.json", age=7200)]
    kept = [stray_temp(run, "eval.json"),          # a command may be writing it right now
            stray_temp(run, "mydata.h5", age=7200),  # not a file of a run folder
            run / ".checkpoint.pt.tmp", run / "notes.tmp", run / ".x.abcdefgh.tmp.bak"]
    for path in kept[2:]:
        path.write_text("mine")
    data = pyrovae.load_dataset(pyrovae.load_config(run / "config.toml").data)
    pyrovae.train(pyrovae.load_config(run / "config.toml"), data, out=run, resume=True)
    assert not [p for p in stale if p.exists()]
    assert all(p.exists() for p in kept)


def test_a_new_run_removes_stale_temporary_files(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    stale = stray_temp(run, "checkpoint.pt")
    assert main(["train", DIGITS, *SMALL, "--out", str(run)]) == 0
    assert not stale.exists()


# ---- 4. resuming onto changed data ---------------------------------------------------------

def test_resume_onto_changed_data_is_refused_in_one_line(tmp_path, capsys):
    gen = np.random.default_rng(0)
    data_file = tmp_path / "data.npy"
    original = (gen.random((400, 64)) < 0.3).astype(np.float32)
    np.save(data_file, original)
    run = tmp_path / "run"
    sets = ["--set", "epochs=1", "--set", "progress=false", "--set", f"data.name={data_file}",
            "--set", "batch_size=32", "--set", "hidden=[16]"]
    assert main(["train", DIGITS, *sets, "--out", str(run)]) == 0
    saved = load_checkpoint(run)
    assert len(saved["data_sha256"]) == 64
    assert json.loads((run / "metrics.json").read_text())["data_sha256"] == saved["data_sha256"]

    np.save(data_file, (gen.random((400, 64)) < 0.3).astype(np.float32))  # same shape
    before = snapshot(run)
    assert main(["train", "--resume", str(run), "--set", "epochs=2"]) == 2
    line = one_line_error(capsys)
    assert "data changed" in line and "restore the original data" in line and \
        "new run" in line, line
    assert snapshot(run) == before

    np.save(data_file, original)  # restored: resumes
    assert main(["train", "--resume", str(run), "--set", "epochs=2"]) == 0
    assert [r["epoch"] for r in pyrovae.load(run).history] == [1, 2]


def test_a_checkpoint_without_a_fingerprint_still_resumes(fresh_run, tmp_path):
    run = copy_of(fresh_run, tmp_path)
    payload = load_checkpoint(run)
    old = {k: v for k, v in payload.items()
           if k not in ("format", "format_version", "pyrovae_version", "data_sha256")}
    save_checkpoint(run / "checkpoint.pt", old)
    assert "data_sha256" not in load_checkpoint(run)
    assert main(["train", "--resume", str(run), "--set", "epochs=2",
                 "--set", "progress=false"]) == 0
    assert load_checkpoint(run)["data_sha256"] == payload["data_sha256"]  # recorded now


def test_fingerprint_is_of_the_values_not_the_binarization():
    from pyrovae.data.fingerprint import data_fingerprint

    a = pyrovae.load_dataset("digits", binarize="dynamic", train_size=50, test_size=20)
    b = pyrovae.load_dataset("digits", binarize="static", train_size=50, test_size=20)
    assert data_fingerprint(a) == data_fingerprint(b)
    b.train_x[0, 0] += 0.5
    assert data_fingerprint(a) != data_fingerprint(b)
    c = pyrovae.load_dataset("digits", train_size=50, test_size=21)
    assert data_fingerprint(a) != data_fingerprint(c)
    assert torch.equal(a.train_x, c.train_x)


def test_csv_rows_with_keys_that_come_and_go_keep_every_column(tmp_path):
    """history.csv's test_objective is there while beta != 1 and not after, or the other way
    round (a cyclical schedule): every key of any row is a column, a missing one an empty
    cell, and the file reads back."""
    from pyrovae.runtime.files import read_csv, write_csv

    rows = [{"epoch": 1, "test_elbo": -1.5}, {"epoch": 2, "test_elbo": -1.25, "test_objective": -1.0},
            {"epoch": 3, "test_elbo": -1.0}]
    write_csv(tmp_path / "h.csv", rows)
    assert (tmp_path / "h.csv").read_text().splitlines()[0] == "epoch,test_elbo,test_objective"
    back = read_csv(tmp_path / "h.csv")
    assert [r["test_objective"] for r in back] == ["", -1.0, ""]
    assert [r["epoch"] for r in back] == [1, 2, 3]
