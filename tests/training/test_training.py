"""Training through the Python API: every objective and network learns, runs are repeatable,
and a saved run loads back to the same model."""

import pickle

import pytest
import torch

from pyrovae import (DataConfig, RunConfig, TrainConfig, VAEConfig, evaluate_elbo, load,
                     load_dataset, train)
from pyrovae.config import OBJECTIVES
from pyrovae.runtime.errors import CheckpointError, ConfigError, DataError
from pyrovae.runs import load_checkpoint, save_checkpoint

FAST = dict(progress=False, batch_size=64, lr=3e-3)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", binarize="dynamic")


def small(**model):
    return VAEConfig(**{"latent_dim": 4, "hidden": (32,), **model})


@pytest.mark.parametrize("network", ["mlp", "conv"])
@pytest.mark.parametrize("elbo", OBJECTIVES)
def test_every_objective_and_network_learns(digits, elbo, network):
    cfg = small(elbo=elbo, network=network, channels=(8, 16), activation="relu")
    run = train(cfg, digits, epochs=3, **FAST)
    first, last = run.history[0]["test_elbo"], run.history[-1]["test_elbo"]
    assert torch.isfinite(torch.tensor([first, last])).all()
    assert last > first + 0.5, (first, last)
    assert run.metrics["objective"] == elbo
    assert run.metrics["steps"] == 3 * (digits.num_train // 64)


def test_num_particles_and_beta_train(digits):
    run = train(small(elbo="trace", num_particles=4, kl={"beta": 0.5}), digits, epochs=2, **FAST)
    assert run.history[-1]["beta"] == 0.5
    last = run.history[-1]  # the ELBO is the bound; the weighted objective is beside it
    assert run.metrics["test_elbo"] == pytest.approx(
        run.metrics["test_log_px_z"] - run.metrics["test_kl"], abs=1e-9)
    assert last["test_objective"] == pytest.approx(
        last["test_log_px_z"] - 0.5 * last["test_kl"], abs=1e-9)


def test_gaussian_likelihood_on_grey_data():
    data = load_dataset("digits", binarize="none")
    run = train(small(likelihood="gaussian", sigma=0.2), data, epochs=3, **FAST)
    assert run.history[-1]["test_elbo"] > run.history[0]["test_elbo"]


def test_conv_on_mnist_images():
    data = load_dataset("mnist", binarize="static", train_size=256, test_size=64)
    run = train(small(network="conv", channels=(8, 16)), data, epochs=1, **FAST)
    assert run.vae.decode(torch.zeros(3, 4)).shape == (3, 784)
    assert torch.isfinite(torch.tensor(run.metrics["test_elbo"]))


def test_same_seed_same_metrics_and_other_seed_differs(digits):
    a = train(small(), digits, epochs=2, seed=3, **FAST)
    b = train(small(), digits, epochs=2, seed=3, **FAST)
    c = train(small(), digits, epochs=2, seed=4, **FAST)
    assert a.history == [dict(r, seconds=a.history[i]["seconds"]) for i, r in enumerate(b.history)]
    assert a.metrics["test_elbo"] == b.metrics["test_elbo"]
    assert a.metrics["test_elbo"] != c.metrics["test_elbo"]


def test_saved_run_loads_to_the_same_model(digits, tmp_path):
    run = train(small(), digits, out=tmp_path / "run", epochs=2, seed=1, **FAST)
    loaded = load(tmp_path / "run")
    assert loaded.config == run.config
    assert loaded.history[-1]["test_elbo"] == pytest.approx(run.metrics["test_elbo"])
    again = evaluate_elbo(loaded.vae, digits.test_data(), seed=run.config.train.seed)
    assert again["elbo"] == pytest.approx(run.metrics["test_elbo"], abs=1e-9)
    x = digits.test_data()[:16]
    torch.testing.assert_close(loaded.vae.reconstruct(x), run.vae.reconstruct(x))
    torch.testing.assert_close(loaded.vae.sample(8, seed=0), run.vae.sample(8, seed=0))
    payload = load_checkpoint(tmp_path / "run")
    assert (payload["epoch"], payload["batch"]) == (3, 0)  # next: the start of epoch 3
    assert payload["step"] == run.metrics["steps"] and len(payload["history"]) == 2
    assert "state" in payload["optimizer"]


def test_train_api_takes_run_config_and_rejects_unknown_options(digits):
    cfg = RunConfig(model=small(), data=DataConfig(name="digits"), train=TrainConfig(epochs=1,
                                                                                     **FAST))
    assert train(cfg, digits).metrics["epochs"] == 1
    with pytest.raises(ConfigError, match="unknown train\\(\\) option 'epoch'"):
        train(small(), digits, epoch=3)


def test_data_the_likelihood_cannot_fit_fails_before_training():
    grey = load_dataset("digits", binarize="none")
    with pytest.raises(DataError, match="binarize"):
        train(small(), grey, epochs=1, **FAST)


def test_checkpoint_refuses_code_truncation_and_newer_formats(tmp_path, digits):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "pyrovae-checkpoint", "payload": Evil()}, evil)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load(evil)
    assert not marker.exists()

    raw = tmp_path / "raw.pt"  # a plain pickle, not a torch zip file
    raw.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError):
        load(raw)
    assert not marker.exists()

    run = train(small(), digits, out=tmp_path / "run", epochs=1, **FAST)
    good = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load(tmp_path / "run")

    payload = {"config": run.config.to_dict(), "input_shape": [1, 8, 8],
               "model": run.vae.state_dict()}
    save_checkpoint(tmp_path / "new.pt", payload)
    blob = torch.load(tmp_path / "new.pt", weights_only=True)
    blob["format_version"] = 99
    torch.save(blob, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="newer than this pyrovae"):
        load(tmp_path / "new.pt")


def test_missing_checkpoint_and_mixed_run_folder(tmp_path, digits):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load(tmp_path)
    train(small(), digits, out=tmp_path / "a", epochs=1, **FAST)
    train(small(latent_dim=3), digits, out=tmp_path / "b", epochs=1, **FAST)
    (tmp_path / "a" / "config.toml").write_bytes((tmp_path / "b" / "config.toml").read_bytes())
    with pytest.raises(CheckpointError, match="does not match"):
        load(tmp_path / "a")


def test_fast_and_generic_paths_compute_the_same_loss(digits, monkeypatch):
    """On fixed parameters and fixed draws, the fast path's compiled objective and fused Adam
    give the generic path's loss (1e-5) and parameters, step after step. The draws are fixed by
    a guide of almost no spread (scale ~ 5e-5, so z ~ loc), as the compiled graph draws its noise
    with other kernels than eager Pyro."""
    from dataclasses import replace

    import pyrovae.components.nets.mlp as mlp
    from pyrovae.objectives import JitTraceMeanFieldELBO
    from pyrovae.training.trainer import Trainer

    monkeypatch.setattr(mlp, "MIN_SCALE", 0.0)
    cfg = RunConfig(model=small(), data=DataConfig(name="digits"), train=TrainConfig(**FAST))
    fast = Trainer(cfg, digits, None)
    generic = Trainer(replace(cfg, train=replace(cfg.train, fast=False)), digits, None)
    assert fast.fast and not generic.fast
    assert isinstance(fast.elbo, JitTraceMeanFieldELBO)
    assert type(generic.elbo).__name__ == "MeanFieldELBO"  # (TraceMeanField_ELBO, checked)
    for t in (fast, generic):
        head = t.vae.encoder.net[-1]
        with torch.no_grad():
            head.weight[4:].zero_()  # the scale half of the encoder output: softplus(-10)
            head.bias[4:].fill_(-10.0)
        t.prepare()
    xb = digits.train_data(1, 0)[:64]
    for _ in range(3):
        losses = [float(t.train_step(xb)) for t in (fast, generic)]
        assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for pf, pg in zip(fast.vae.parameters(), generic.vae.parameters()):
        torch.testing.assert_close(pf, pg, atol=1e-5, rtol=1e-4)  # fused vs per-tensor Adam


def test_fast_path_compiles_once_per_run(digits):
    from pyrovae.training.trainer import Trainer

    cfg = RunConfig(model=small(), data=DataConfig(name="digits"),
                    train=TrainConfig(epochs=2, **FAST))
    trainer = Trainer(cfg, digits, None)
    trainer.run()
    assert trainer.step == 2 * (digits.num_train // 64)
    assert trainer.elbo.traces == 2  # the one compilation runs the Python loss twice


def test_fast_and_generic_paths_train_to_the_same_elbo(digits):
    ends = {fast: [train(small(), digits, epochs=8, seed=s, fast=fast, **FAST).metrics["test_elbo"]
                   for s in (0, 1)] for fast in (True, False)}
    assert abs(sum(ends[True]) - sum(ends[False])) / 2 < 1.0, ends
