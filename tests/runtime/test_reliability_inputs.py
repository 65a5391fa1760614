"""Every command as hardened as training (issue 15), the inputs' part: every numeric option
of every command refuses NaN, inf and out-of-range values in one line (by the config's own
field rules, the Python API alike), sizes taken from a flag, a config, a checkpoint or an
array file's header are checked against memory before anything large is allocated, picture
grids are capped, a missing device is reported as missing (never as a corrupt checkpoint),
and integer images of other dtypes than uint8 are refused with the fix."""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import pyrovae
from pyrovae import applications
from pyrovae.runtime import memory
from pyrovae.cli import build_parser, main
from pyrovae.cli.options import Choice, Number
from pyrovae.config import DataConfig, RunConfig, TrainConfig, VAEConfig, to_toml
from pyrovae.config.fields import SEED_MAX
from pyrovae.data import load_dataset
from pyrovae.runtime.errors import ConfigError, DataError, DeviceError, PyroVAEError
from pyrovae.evaluation import evaluate_run

ROOT = Path(__file__).resolve().parents[2]
DIGITS = str(ROOT / "configs" / "digits.toml")
TINY = ["--set", "epochs=1", "--set", "progress=false", "--set", "hidden=[32]",
        "--set", "latent_dim=4"]
BOMB = str(10**12)  # far beyond any machine's memory, whatever it multiplies

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def one_line_error(err: str) -> str:
    """stderr is exactly one line 'pyrovae: error: ...' without a traceback."""
    assert "Traceback" not in err, err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("pyrovae: error: "), err
    return lines[0]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny digits run (1 epoch, 32 hidden units, 4 latent dimensions)."""
    out = tmp_path_factory.mktemp("inputs") / "run"
    assert main(["train", DIGITS, *TINY, "--out", str(out)]) == 0
    return out


# ---- every numeric option of every command -----------------------------------------------------

NAN, INF = "nan", "inf"
#: command -> {option: values it must refuse}; "{run}" and friends are filled in below
BAD_VALUES = {
    "sample": {"--n": ["0", "-3", NAN, INF, "2.5"], "--temperature": ["0", "-1", NAN, INF, "-inf"],
               "--seed": ["-1", str(SEED_MAX + 1), NAN], "--by-class": ["0", "-2", "101", NAN]},
    "reconstruct": {"--n": ["0", "-1", NAN, INF]},
    "interpolate": {"--a": [NAN, INF, "1.5"], "--b": [NAN], "--steps": ["1", "0", "-4", NAN,
                                                                      "101"]},
    "traverse": {"--top": ["0", "-1", NAN, "101"], "--range": ["0", "-3", NAN, INF, "-inf"],
                 "--steps": ["1", "0", NAN, "101"], "--index": [NAN, INF],
                 "--dims": ["-1", NAN]},
    "latent-map": {"--n": ["-1", NAN, INF], "--grid": ["0", "-1", NAN, "101"]},
    "anomaly": {"--samples": ["0", "-5", NAN, INF], "--neighbours": ["0", "-1", NAN],
                "--labels-anomalous": ["-1", NAN], "--seed": ["-1", str(2**32), NAN]},
    "impute": {"--n": ["0", "-1", NAN], "--eval-n": ["-1", NAN], "--gibbs-steps": ["-1", NAN],
               "--samples": ["0", "-1", NAN, INF], "--seed": ["-1", str(2**32)]},
    "evaluate": {"--nll-samples": ["0", "-1", "10", NAN, INF], "--points": ["0", "-1", NAN],
                 "--seed": ["-1", str(2**32), NAN], "--batch-size": ["0", "-1", NAN, INF],
                 "--memory-mb": ["0", "-1", NAN],
                 # AIS, BDMC and the inference gaps (docs/ais.md)
                 "--ais-steps": ["0", "-1", NAN, INF], "--ais-chains": ["0", "-2", NAN],
                 "--ais-leapfrog": ["0", NAN], "--ais-step-size": ["0", "-0.1", NAN, INF],
                 "--ais-target-accept": ["0", "1", "1.5", NAN], "--bdmc": ["0", "-1", NAN],
                 "--gap-steps": ["0", NAN], "--gap-samples": ["0", "-1"],
                 "--gap-lr": ["0", "-1", NAN, INF], "--gap-eval-samples": ["1", "0", NAN],
                 "--disentanglement-points": ["0", "-1", NAN, INF]},
    "export": {"--draws": ["0", "-1", "5", NAN, INF], "--seed": ["-1", str(2**40)]},
    "compress": {"--batch-size": ["0", "-1", NAN, INF], "--latent-bits": ["0", "-1", NAN],
                 "--step": ["0", "-1", NAN, INF]},
    "decompress": {},  # no numeric option; in the table for the --device check
    # compare: the lower bounds are experiments.Settings' (tests/experiments/test_compare.py)
    "compare": {"--seeds": ["0", "-1", NAN, "1001"], "--nll-samples": ["0", "10", NAN],
                "--eval-points": ["-1", NAN], "--grad-draws": ["0", "1", NAN],
                "--grad-batch": ["-1", INF], "--disentanglement": ["-1", "5", NAN, INF]},
    "reproduce": {"--epochs": ["0", "-1", NAN, "2.5"], "--nll-samples": ["0", "10", NAN, INF],
                  "--points": ["0", "-1", NAN], "--seeds": ["0", "1", NAN, INF]},
}
RUN_COMMANDS = [c for c in BAD_VALUES if c not in ("compare", "reproduce")]
BASE = {"export": ["--arviz", "{tmp}/x.nc"], "compare": ["--out", "{tmp}/grid"],
        "compress": ["test", "-o", "{tmp}/x.pvz"], "decompress": ["{tmp}/x.pvz", "-o", "{tmp}/x.npy"],
        "reproduce": ["--out", "{tmp}/rep"]}
#: the positional argument of the commands that take no run folder
HEAD = {"compare": DIGITS, "reproduce": "burda-vae-1"}
CASES = [(cmd, flag, value) for cmd, flags in BAD_VALUES.items()
         for flag, values in flags.items() for value in values]


def command_line(cmd: str, run: Path, tmp: Path, *extra: str) -> list[str]:
    head = [cmd, HEAD.get(cmd, str(run))]
    base = [a.format(tmp=tmp) for a in BASE.get(cmd, [])]
    if cmd in RUN_COMMANDS and cmd not in ("export", "compress", "decompress"):
        base += ["--out", str(tmp / "out")]
    return head + base + list(extra)


@pytest.mark.parametrize("cmd, flag, value", CASES,
                         ids=[f"{c} {f} {v}" for c, f, v in CASES])
def test_bad_numeric_option_is_one_line_exit_2(cmd, flag, value, run_dir, tmp_path, capsys):
    """Refused before the run is opened: nothing is written, not even the --out folder."""
    status = main(command_line(cmd, run_dir, tmp_path, f"{flag}={value}"))
    line = one_line_error(capsys.readouterr().err)
    assert status == 2
    assert flag.lstrip("-") in line, line  # (compare's API names them without dashes)
    assert not any(tmp_path.iterdir())  # no --out folder, no .nc, no grid


def test_every_numeric_option_of_every_command_is_checked():
    """The table above covers every option whose type is a pyrovae rule, and every numeric
    option (int/float) uses one: none is left to argparse's bare int/float."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    ruled = {}
    for name, p in sub.choices.items():
        for action in p._actions:
            assert action.type not in (int, float), (name, action.option_strings)
            if isinstance(action.type, Number):
                ruled.setdefault(name, set()).add(action.option_strings[-1])
    assert ruled == {c: set(flags) for c, flags in BAD_VALUES.items() if flags}
    device_commands = {name for name, p in sub.choices.items()
                       if any(isinstance(a.type, Choice) for a in p._actions)}
    assert device_commands == set(RUN_COMMANDS)


@pytest.mark.parametrize("cmd", RUN_COMMANDS)
def test_device_must_be_cpu_or_cuda(cmd, run_dir, tmp_path, capsys):
    assert main(command_line(cmd, run_dir, tmp_path, "--device", "tpu")) == 2
    assert "--device = 'tpu' is not one of: cpu, cuda" in one_line_error(capsys.readouterr().err)


def test_argparse_errors_keep_argparse_form(run_dir, capsys):
    """Not a number's value but the command line's shape (an unknown option, a choice off
    its list): argparse's usage line and message, exit status 2."""
    with pytest.raises(SystemExit) as stop:
        main(["evaluate", str(run_dir), "--split", "valid"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: ") and "invalid choice: 'valid'" in err


@pytest.mark.parametrize("call, message", [
    (lambda r, o: applications.sample(r, o, n=0), "n = 0 is out of range"),
    (lambda r, o: applications.sample(r, o, temperature=float("inf")), "finite"),
    (lambda r, o: applications.sample(r, o, seed=2**32), "<= 4294967295"),
    (lambda r, o: applications.reconstruct(r, o, n=-1), "n = -1"),
    (lambda r, o: applications.interpolate(r, o, steps=1), "steps = 1"),
    (lambda r, o: applications.traverse(r, o, span=float("nan")), "span must be a finite"),
    (lambda r, o: applications.traverse(r, o, top=0), "top = 0"),
    (lambda r, o: applications.traverse(r, o, dims=[0] * 101), "at most 100 rows"),
    (lambda r, o: applications.latent_map(r, o, grid=0), "grid = 0"),
    (lambda r, o: applications.anomaly(r, o, num_samples=0), "num_samples = 0"),
    (lambda r, o: applications.anomaly(r, o, neighbours=0), "neighbours = 0"),
    (lambda r, o: applications.impute(r, o, num_samples=0), "num_samples = 0"),
    (lambda r, o: applications.impute(r, o, gibbs_steps=-1), "gibbs_steps = -1"),
], ids=["sample n", "sample temperature", "sample seed", "reconstruct n", "interpolate steps",
        "traverse span", "traverse top", "traverse dims", "latent_map grid", "anomaly samples",
        "anomaly neighbours", "impute samples", "impute gibbs"])
def test_the_api_refuses_what_the_cli_refuses(call, message, run_dir, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=message):
        call(run_dir, out)
    assert not out.exists()


def test_evaluate_run_checks_its_arguments(run_dir):
    run, data = pyrovae.load(run_dir), load_dataset("digits", binarize="dynamic")
    for kwargs, message in (({"batch_size": 0}, "batch_size = 0"),  # was ZeroDivisionError
                            ({"memory_mb": -1}, "memory_mb = -1"),
                            ({"seed": 2**32}, "seed = 4294967296"),
                            ({"nll_samples": 10}, "too few"),
                            ({"nll_samples": float("nan")}, "integer")):
        with pytest.raises(ConfigError, match=message):
            evaluate_run(run, data, progress=False, **kwargs)
    with pytest.raises(DataError, match="at least 2 points"):  # a NaN standard error otherwise
        evaluate_run(run, data, nll_samples=25, max_points=1, progress=False)


def test_seeds_are_bounded_to_numpys_range():
    assert TrainConfig(seed=SEED_MAX).seed == SEED_MAX
    for make in (lambda: TrainConfig(seed=SEED_MAX + 1), lambda: DataConfig(seed=2**40)):
        with pytest.raises(ConfigError, match="is out of range: it must be <= 4294967295"):
            make()
    with pytest.raises(ConfigError, match="train.seed = -1 is out of range: it must be >= 0"):
        TrainConfig(seed=-1)


def test_no_nan_reaches_a_json_file(run_dir, tmp_path, capsys):
    """traverse --range nan used to exit 0 with NaN in traverse.json; a valid range writes
    strict JSON."""
    assert main(["traverse", str(run_dir), "--range", "nan", "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "traverse.json").exists()
    capsys.readouterr()
    assert main(["traverse", str(run_dir), "--range", "2", "--top", "2", "--steps", "3",
                 "--out", str(tmp_path)]) == 0

    def refuse(constant):
        raise ValueError(f"non-finite {constant} in JSON")
    result = json.loads((tmp_path / "traverse.json").read_text(), parse_constant=refuse)
    assert result["span"] == 2.0 and len(result["dims"]) == 2


# ---- sizes: flags, configs, checkpoints, array files ----------------------------------------------

def assert_refused_fast(call, budget_mb: float = 150.0, seconds: float = 10.0) -> None:
    """``call`` returns within ``seconds`` and the process's peak memory grows by less than
    ``budget_mb``: the size was refused before it was allocated."""
    before, start = peak_rss_mb(), time.perf_counter()
    call()
    assert time.perf_counter() - start < seconds
    assert peak_rss_mb() - before < budget_mb, (before, peak_rss_mb())


@pytest.mark.parametrize("args, flag", [
    (["sample", "--n", BOMB], "--n"),
    (["evaluate", "--nll-samples", BOMB, "--quiet"], "--nll-samples"),
    (["evaluate", "--nll-samples", str(10**8), "--memory-mb", BOMB, "--quiet"], "--memory-mb"),
    (["anomaly", "--samples", BOMB, "--no-progress"], "--samples"),
    (["anomaly", "--score", "nll", "--samples", BOMB, "--no-progress"], "--samples"),
    (["impute", "--samples", BOMB, "--no-progress"], "--samples"),
    (["impute", "--gibbs-steps", BOMB, "--no-progress"], "--gibbs-steps"),
    (["export", "--arviz", "{tmp}/x.nc", "--draws", BOMB], "--draws"),
    (["export", "--arviz", "{tmp}/x.nc", "--points", f"0-{BOMB}"], "--points"),
], ids=lambda a: " ".join(a) if isinstance(a, list) else None)
def test_size_bomb_from_a_flag_is_refused_before_allocating(args, flag, run_dir, tmp_path,
                                                            capsys):
    main(["sample", str(run_dir), "--n", "4", "--out", str(tmp_path / "warm")])  # imports
    capsys.readouterr()
    args = [a.format(tmp=tmp_path) for a in args]
    status = []
    assert_refused_fast(lambda: status.append(main([args[0], str(run_dir), *args[1:]])))
    line = one_line_error(capsys.readouterr().err)
    assert status == [2] and flag in line
    assert "memory" in line or "more than" in line


def test_sample_grid_is_capped_and_the_npy_holds_every_draw(run_dir, tmp_path, capsys):
    """The PNG shows the first MAX_GRID_IMAGES draws; sample.npy and sample.json all of them
    (the PNG of a million draws used to need 15.7 GB)."""
    from PIL import Image

    n = memory.MAX_GRID_IMAGES + 300
    assert main(["sample", str(run_dir), "--n", str(n), "--save-npy", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "sample.json").read_text())
    assert (result["n"], result["n_shown"]) == (n, memory.MAX_GRID_IMAGES)
    assert np.load(tmp_path / "sample.npy").shape == (n, 1, 8, 8)
    width, height = Image.open(tmp_path / "sample.png").size
    assert (width, height) == ((8 * 9 + 1) * 4, (memory.MAX_GRID_IMAGES // 8 * 9 + 1) * 4)


@pytest.mark.parametrize("edit, what", [
    (["--set", "num_particles=10000000"], "model.num_particles = 10000000"),
    (["--set", "latent_dim=1000000000"], "model.latent_dim = 1000000000"),
    (["--set", "hidden=[1000000000]"], "hidden = [1000000000]"),
    (["--set", "network=conv", "--set", "channels=[100000,100000]"], "channels"),
])
def test_size_bomb_from_a_config_is_refused_before_a_folder_exists(edit, what, run_dir,
                                                                   tmp_path, capsys):
    """--set num_particles=10000000 used to print a 112-line traceback (or be killed) and
    leave a stub run folder."""
    out = tmp_path / "run"
    status = []
    assert_refused_fast(lambda: status.append(main(["train", DIGITS, *TINY, *edit,
                                                    "--out", str(out)])))
    line = one_line_error(capsys.readouterr().err)
    assert status == [2] and what in line and "memory" in line
    assert not out.exists()


def test_eval_batch_size_above_the_data_is_not_a_bomb(tmp_path, capsys):
    """Only the batches that exist count: eval_batch_size 10**9 on 297 test points trains."""
    assert main(["train", DIGITS, *TINY, "--set", "eval_batch_size=1000000000",
                 "--out", str(tmp_path / "run")]) == 0


def crafted_run(run_dir: Path, out: Path, **changes) -> Path:
    """A copy of ``run_dir`` whose checkpoint (and config.toml, so they still agree) carry
    ``model_config`` edits or a new ``input_shape``."""
    shutil.copytree(run_dir, out)
    payload = torch.load(out / "checkpoint.pt", weights_only=True)
    payload["config"]["model"].update(changes.get("model", {}))
    if "input_shape" in changes:
        payload["input_shape"] = changes["input_shape"]
    torch.save(payload, out / "checkpoint.pt")
    (out / "config.toml").write_text(to_toml(RunConfig.from_dict(payload["config"])))
    return out


@pytest.mark.parametrize("changes", [{"model": {"latent_dim": 10**9}},
                                     {"model": {"hidden": [10**9]}},
                                     {"input_shape": [1, 10**6, 10**6]}],
                         ids=["latent_dim", "hidden", "input_shape"])
def test_size_bomb_in_a_checkpoint_is_refused_before_building(changes, run_dir, tmp_path,
                                                              capsys):
    """A crafted checkpoint whose config says latent_dim = 10**9 used to allocate 1 TB."""
    crafted = crafted_run(run_dir, tmp_path / "crafted", **changes)
    with pytest.raises(PyroVAEError, match="parameters.*needs about .* of memory"):
        assert_refused_fast(lambda: pyrovae.load(crafted))
    status = []
    assert_refused_fast(lambda: status.append(main(["sample", str(crafted)])))
    assert status == [2] and "make model.latent_dim" in one_line_error(capsys.readouterr().err)


def npy_header_only(path: Path, shape, descr: str = "<f4") -> int:
    """A .npy file with a valid header claiming ``shape`` and no data; returns the offset."""
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": descr, "fortran_order": False,
                                                  "shape": tuple(shape)})
        return fh.tell()


def test_array_file_header_claiming_more_than_the_file_holds(tmp_path):
    npy = tmp_path / "bomb.npy"
    npy_header_only(npy, (10**6, 10**6))  # 10**12 float32: 3.6 TiB
    with pytest.raises(DataError, match=r"cannot read .*header says x \(1000000, 1000000\) "
                                        r"float32 \(3\.6 TiB of data\).*truncated"):
        assert_refused_fast(lambda: load_dataset(str(npy)))
    npz = tmp_path / "bomb.npz"
    header = tmp_path / "x_train.npy"
    npy_header_only(header, (10**12, 8), "<f8")
    with zipfile.ZipFile(npz, "w") as archive:
        archive.write(header, "x_train.npy")
        archive.write(header, "x_test.npy")
    with pytest.raises(DataError, match="cannot read .*header says x_train .*truncated"):
        assert_refused_fast(lambda: load_dataset(str(npz)))


def test_array_file_too_large_for_memory_is_refused_from_its_header(tmp_path, capsys):
    """A (sparse) file that does hold the data its header claims, far more than memory."""
    path = tmp_path / "huge.npy"
    offset = npy_header_only(path, (10**5, 10**6), "|u1")  # 100 GB of uint8
    try:
        with open(path, "r+b") as fh:
            fh.truncate(offset + 10**11)
    except OSError:
        pytest.skip("this file system has no sparse files")
    with pytest.raises(DataError, match=r"loading .*huge\.npy.*needs about .* of memory"):
        assert_refused_fast(lambda: load_dataset(str(path)))
    status = []
    assert_refused_fast(lambda: status.append(main(["train", DIGITS, *TINY, "--set",
                                                    f"data.name={path}", "--out",
                                                    str(tmp_path / "run")])))
    assert status == [2] and "smaller file" in one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


def test_memory_check_reads_the_machine_and_names_size_and_fix(monkeypatch):
    assert memory.available_bytes() > 0
    # (the process's own limits, RLIMIT_AS and the cgroup's, are tests/red_team/test_memory.py's)
    monkeypatch.setattr(memory, "_rlimit_available", lambda: None)
    monkeypatch.setattr(memory, "_cgroup_available", lambda: None)
    monkeypatch.setattr(memory, "_meminfo_available", lambda: None)
    assert memory.available_bytes() > 0  # os.sysconf
    monkeypatch.setattr(memory, "_sysconf_available", lambda: None)
    assert memory.available_bytes() == memory.FALLBACK_BYTES
    memory.check_bytes(memory.FALLBACK_BYTES, "exactly all", "nothing")
    with pytest.raises(ConfigError, match=r"^the thing needs about 64\.0 GiB of memory, more "
                                          r"than the 64\.0 GiB available; lower --n$"):
        memory.check_bytes(memory.FALLBACK_BYTES + 2**20, "the thing", "lower --n")


@pytest.mark.parametrize("config, shape", [
    (VAEConfig(), (1, 28, 28)),
    (VAEConfig(network="conv", channels=(8, 16, 32)), (3, 32, 32)),
    (VAEConfig(hidden=(64, 32), likelihood="discretized-logistic"), (64,)),
    (VAEConfig(likelihood="gaussian-learned", variance="decoder", prior="vamp",
               elbo="trace"), (1, 8, 8)),
], ids=["mlp", "conv", "two layers", "vamp"])
def test_parameter_estimate_matches_the_built_model(config, shape):
    from pyrovae.runs import make_model

    model = make_model(config, shape)
    built = sum(t.numel() for t in [*model.parameters(), *model.buffers()])
    assert memory.model_parameters(config, shape) == pytest.approx(built, rel=0.01)


# ---- devices ----------------------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("cmd", ["sample", "evaluate", "traverse"])
def test_missing_gpu_is_reported_as_a_missing_device_not_a_corrupt_checkpoint(cmd, run_dir,
                                                                              tmp_path, capsys):
    assert main([cmd, str(run_dir), "--device", "cuda", "--out", str(tmp_path)]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "no usable CUDA GPU" in line and "--device cpu" in line
    assert "corrupt" not in line and "retrain" not in line
    with pytest.raises(DeviceError, match="no usable CUDA GPU"):
        pyrovae.load(run_dir, device="cuda")
    with pytest.raises(DeviceError, match="not a device torch knows"):
        pyrovae.load(run_dir, device="tpu")


# ---- integer images ---------------------------------------------------------------------------

def test_integer_images_other_than_uint8_are_refused_with_the_fix(tmp_path, capsys):
    """int64 grey levels 0..254 used to train unscaled (test ELBO -1.8e7 under a Gaussian)
    while the same uint8 images are divided by 255: now only uint8 is read as 8-bit images."""
    grey = np.random.default_rng(0).integers(0, 255, (40, 8, 8))
    np.save(tmp_path / "u8.npy", grey.astype(np.uint8))
    as_uint8 = load_dataset(str(tmp_path / "u8.npy"))
    assert float(as_uint8.train_x.max()) <= 1.0
    for dtype in (np.int64, np.int32, np.int16, np.uint16):
        path = tmp_path / f"{np.dtype(dtype).name}.npy"
        np.save(path, grey.astype(dtype))
        with pytest.raises(DataError, match=rf"integer dtype {np.dtype(dtype).name}.*"
                                            r"astype\(np\.uint8\).*astype\(np\.float32\)"):
            load_dataset(str(path))
        np.save(path, np.asarray(np.load(path), dtype=np.uint8))  # the fix the message names
        assert torch.equal(load_dataset(str(path)).train_x, as_uint8.train_x)
    np.save(tmp_path / "i64.npy", grey)
    assert main(["train", DIGITS, *TINY, "--set", f"data.name={tmp_path / 'i64.npy'}",
                 "--set", "likelihood=gaussian", "--set", "binarize=none",
                 "--out", str(tmp_path / "run")]) == 2
    assert "integer dtype int64" in one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


def test_the_export_api_checks_draws_like_the_cli(run_dir, tmp_path):
    """``export_arviz`` (the API behind ``pyrovae export``) refuses a draws size-bomb and too
    few draws before allocating, as the CLI does."""
    from pyrovae.runtime.errors import ConfigError
    from pyrovae.reports.arviz_export import export_arviz

    run = pyrovae.load(run_dir)
    data = pyrovae.load_dataset(run.config.data)
    with pytest.raises(ConfigError, match="needs about .* of memory"):
        export_arviz(run, data, tmp_path / "x.nc", points=range(10), draws=10**9)
    with pytest.raises(ConfigError, match="too few"):
        export_arviz(run, data, tmp_path / "x.nc", points=range(3), draws=5)
    assert not (tmp_path / "x.nc").exists()
