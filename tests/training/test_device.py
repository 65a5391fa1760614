"""The device-dependent path: training (compiled and generic objectives), resuming, loading and
evaluating on the device ``PYROVAE_TEST_DEVICE`` names (default cpu).

    PYROVAE_TEST_DEVICE=cuda pytest tests/training/test_device.py     # what benchmarks/gpu_check.sh runs

On the CPU a resumed run is bit-identical to an uninterrupted one; on CUDA the test allows float
tolerance (cuBLAS may choose other kernels), and says which it found.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

import pyrovae
from pyrovae import VAEConfig, load_dataset, train
from pyrovae.evaluation import evaluate_run

DEVICE = os.environ.get("PYROVAE_TEST_DEVICE", "cpu")
pytestmark = pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(),
                                reason=f"PYROVAE_TEST_DEVICE={DEVICE} but no CUDA GPU")
OPTIONS = dict(batch_size=32, lr=3e-3, seed=0, progress=False, device=DEVICE)


@pytest.fixture(scope="module")
def data(one_thread):
    return load_dataset("digits", binarize="dynamic", train_size=256, test_size=64)


def config(elbo: str = "meanfield") -> VAEConfig:
    return VAEConfig(latent_dim=4, hidden=(32,), elbo=elbo,
                     num_particles=5 if elbo == "iwae" else 1)


def params(vae) -> dict:
    return {k: v.detach().cpu() for k, v in vae.state_dict().items()}


@pytest.mark.parametrize("elbo,fast", [("meanfield", True), ("meanfield", False),
                                       ("trace", True), ("iwae", True), ("tracegraph", True)])
def test_trains_on_the_device(data, elbo, fast, tmp_path):
    run = train(config(elbo), data, out=tmp_path / "run", epochs=1, fast=fast, **OPTIONS)
    kind = torch.device(DEVICE).type
    assert {p.device.type for p in run.vae.parameters()} == {kind}
    assert run.metrics["device"].startswith(kind)
    assert math.isfinite(run.metrics["test_elbo"]) and run.metrics["test_elbo"] < 0
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


def test_a_resumed_run_continues_where_it_stopped(data, tmp_path):
    full = train(config(), data, out=tmp_path / "full", epochs=2, **OPTIONS)
    train(config(), data, out=tmp_path / "half", epochs=1, **OPTIONS)
    resumed = train(config(), data, out=tmp_path / "half", resume=True, epochs=2, **OPTIONS)
    a, b = params(full.vae), params(resumed.vae)
    if DEVICE == "cpu":
        assert all(torch.equal(a[k], b[k]) for k in a)  # bit for bit on the CPU
    else:
        for k in a:
            torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-5)
    assert [r["test_elbo"] for r in resumed.history] == pytest.approx(
        [r["test_elbo"] for r in full.history], abs=0 if DEVICE == "cpu" else 1e-3)


def test_a_device_run_loads_and_evaluates_on_either_device(data, tmp_path):
    train(config(), data, out=tmp_path / "run", epochs=1, **OPTIONS)
    here = pyrovae.load(tmp_path / "run", device=DEVICE)
    cpu = pyrovae.load(tmp_path / "run", device="cpu")
    x = data.test_data()[:16]
    torch.testing.assert_close(here.vae.reconstruct(x.to(DEVICE)).cpu(), cpu.vae.reconstruct(x),
                               atol=1e-5, rtol=1e-5)
    assert here.vae.sample(8, seed=0).shape == (8, 64)
    numbers = {dev: evaluate_run(run, data, nll_samples=50, max_points=40, progress=False)
               for dev, run in ((DEVICE, here), ("cpu", cpu))}
    for result in numbers.values():
        assert math.isfinite(result["test_nll"]) and -result["test_nll"] > result["test_elbo"]
    # other generators on another device: the same estimate within its noise
    assert abs(numbers[DEVICE]["test_nll"] - numbers["cpu"]["test_nll"]) < 0.5
