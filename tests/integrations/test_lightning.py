"""PyTorch Lightning integration (pyrovae/integrations/lightning.py): a Lightning run takes pyrovae's
step, so it reaches pyrovae's test ELBO (bit for bit against the generic path, train.fast =
false), trains every parameter (global pyro.param sites included), writes a run folder that
pyrovae.load reads back, trains a non-default bound and estimator (IWAE K=5 with DReG), and
refuses in one line what it cannot reproduce. scikit-learn's 8x8 digits, 3 epochs: about a
second a run."""

from __future__ import annotations

import importlib
import sys
from dataclasses import replace
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule
from torch import nn

import pyrovae
from pyrovae.config import load_config
from pyrovae.data.dataset import from_arrays
from pyrovae.data.sources import RawData
from pyrovae.evaluation import evaluate_elbo
from pyrovae.objectives import BoundObjective
from pyrovae.runtime.errors import ConfigError

pl = pytest.importorskip("lightning.pytorch")
from pyrovae.integrations.lightning import PyroVAEDataModule, PyroVAEModule  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "configs" / "digits.toml"  # 784 -> 64-dim digits, batch 64, lr 3e-3, meanfield


def lightning_trainer(epochs: int, **kwargs) -> pl.Trainer:
    return pl.Trainer(max_epochs=epochs, accelerator="cpu", enable_progress_bar=False,
                      logger=False, enable_checkpointing=False, enable_model_summary=False,
                      num_sanity_val_steps=0, **kwargs)


def fit(module: PyroVAEModule, epochs: int, datamodule=None, **kwargs) -> pl.Trainer:
    trainer = lightning_trainer(epochs, **kwargs)
    trainer.fit(module, datamodule=datamodule or module.datamodule())
    return trainer


@pytest.fixture(scope="module")
def digits():
    return pyrovae.load_dataset("digits", binarize="dynamic")


@pytest.fixture(scope="module")
def config():
    return load_config(DIGITS)


@pytest.fixture(scope="module")
def lightning_run(config, digits):
    """A 3-epoch Lightning run: (module, its parameters before training, the Trainer)."""
    module = PyroVAEModule(config, digits, epochs=3, seed=0)
    before = {name: p.detach().clone() for name, p in module.model.named_parameters()}
    trainer = fit(module, 3)
    return module, before, trainer


def test_lightning_reaches_pyrovaes_test_elbo(lightning_run, config, digits):
    """Same config and seed, 3 epochs: within 0.5 nats of pyrovae.train (its fast path: the
    JIT objective and fused Adam), and the very numbers of its generic path."""
    module, _, trainer = lightning_run
    run = module.to_run()
    fast = pyrovae.train(config, digits, epochs=3, seed=0, progress=False)
    generic = pyrovae.train(config, digits, epochs=3, seed=0, progress=False, fast=False)
    print(f"lightning {run.metrics['test_elbo']:.4f}  pyrovae {fast.metrics['test_elbo']:.4f}")
    assert abs(run.metrics["test_elbo"] - fast.metrics["test_elbo"]) < 0.5
    assert [r["test_elbo"] for r in run.history] == [r["test_elbo"] for r in generic.history]
    assert [r["train_elbo"] for r in run.history] == [r["train_elbo"] for r in generic.history]
    assert run.metrics["steps"] == generic.metrics["steps"] == 3 * (digits.num_train // 64)
    assert run.config.train.fast is False and "Jit" not in run.metrics["objective_run"]
    logged = trainer.callback_metrics  # the last epoch's numbers, as Lightning logged them
    assert float(logged["test_elbo"]) == pytest.approx(run.metrics["test_elbo"], abs=1e-4)
    assert float(logged["train_elbo"]) == pytest.approx(run.history[-1]["train_elbo"], abs=1e-4)
    assert "train_loss" in logged


def test_every_parameter_changes(lightning_run):
    module, before, _ = lightning_run
    unchanged = [name for name, p in module.model.named_parameters()
                 if torch.equal(p.detach(), before[name])]
    assert len(before) > 0 and unchanged == []


def test_the_run_folder_reads_back(lightning_run, digits, tmp_path):
    """to_run(out=...) writes a run folder; pyrovae.load rebuilds the model, which evaluates to
    the run's own test ELBO."""
    module, _, _ = lightning_run
    run = module.to_run(out=tmp_path / "run")
    loaded = pyrovae.load(tmp_path / "run")
    test = evaluate_elbo(loaded.model, digits.test_data(), seed=0)
    assert test["elbo"] == pytest.approx(run.metrics["test_elbo"], abs=1e-9)
    assert loaded.history == run.history and (tmp_path / "run" / "metrics.json").is_file()


def test_iwae_dreg_trains_under_lightning(config, digits):
    """A non-default pair: the IWAE bound with the DReG estimator, K = 5 particles; one epoch
    takes pyrovae's generic steps exactly."""
    model = replace(config.model, num_particles=5,
                    objective=replace(config.model.objective, bound="iwae", gradient="dreg"))
    cfg = replace(config, model=model)
    module = PyroVAEModule(cfg, digits, epochs=1, seed=1)
    assert isinstance(module.pyrovae_trainer.elbo, BoundObjective)
    before = [p.detach().clone() for p in module.model.parameters()]
    fit(module, 1)
    run = module.to_run()
    generic = pyrovae.train(cfg, digits, epochs=1, seed=1, progress=False, fast=False)
    assert run.metrics["objective"] == "iwae/dreg" and run.metrics["num_particles"] == 5
    assert run.metrics["test_elbo"] == generic.metrics["test_elbo"]
    assert all(not torch.equal(a, p.detach()) for a, p in zip(before, module.model.parameters()))


class GlobalSigma(PyroModule):
    """z ~ N(0, I), x | z ~ N(z, sigma^2 I) with sigma a global pyro.param of the model; the
    guide's scale is one too. They live in Pyro's param store, not in the module."""

    def __init__(self, input_shape):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.a = nn.Parameter(torch.full(self.input_shape, 0.5))

    def _plate(self, x, n_data):
        return pyro.plate("data", n_data or x.shape[0], subsample=torch.arange(x.shape[0]))

    def model(self, x, n_data=None):
        sigma = pyro.param("sigma", torch.tensor(1.0), constraint=constraints.positive)
        with self._plate(x, n_data):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[1]), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, sigma).to_event(1), obs=x)

    def guide(self, x, n_data=None):
        scale = pyro.param("q_scale", torch.tensor(1.0), constraint=constraints.positive)
        with self._plate(x, n_data):
            pyro.sample("z", dist.Normal(self.a * x, scale).to_event(1))


def test_global_pyro_params_are_trained():
    """The global pyro.param sites are in Lightning's optimizer and move as in pyrovae.train."""
    x = torch.randn(300, 4, generator=torch.Generator().manual_seed(0)) * 1.2
    data = from_arrays("gauss", RawData(x[:250].numpy(), x[250:].numpy()))
    options = {"epochs": 2, "batch_size": 50, "lr": 0.05, "seed": 0}
    module = PyroVAEModule(GlobalSigma(data.shape), data, **options)
    assert len(module.trained_parameters()) == 3  # a, sigma, q_scale (unconstrained)
    fit(module, 2)
    ours = {k: pyro.param(k).item() for k in ("sigma", "q_scale")}
    run = module.to_run()
    generic = pyrovae.train(GlobalSigma(data.shape), data, progress=False, fast=False, **options)
    assert ours != {"sigma": 1.0, "q_scale": 1.0}
    assert ours == {k: pyro.param(k).item() for k in ("sigma", "q_scale")}  # (same values)
    assert run.metrics["test_elbo"] == generic.metrics["test_elbo"]


def test_lightning_checkpoints_hold_the_global_pyro_params(tmp_path):
    """A Lightning checkpoint file holds the pyro.param sites and the history; loading it into a
    fresh module puts them back (the module's weights come back through its state_dict)."""
    x = torch.randn(200, 4, generator=torch.Generator().manual_seed(1))
    data = from_arrays("gauss", RawData(x[:150].numpy(), x[150:].numpy()))
    options = {"epochs": 1, "batch_size": 50, "lr": 0.05, "seed": 0}
    module = PyroVAEModule(GlobalSigma(data.shape), data, **options)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", enable_progress_bar=False, logger=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=module.datamodule())
    sigma = pyro.param("sigma").item()
    path = trainer.checkpoint_callback.best_model_path
    fresh = PyroVAEModule(GlobalSigma(data.shape), data, **options)  # claims sigma = 1 again
    assert pyro.param("sigma").item() == 1.0
    checkpoint = torch.load(path, weights_only=False)
    fresh.load_state_dict(checkpoint["state_dict"])
    fresh.on_load_checkpoint(checkpoint)
    assert pyro.param("sigma").item() == sigma != 1.0
    assert fresh.history == module.history and len(fresh.history) == 1
    assert torch.equal(fresh.model.a, module.model.a)


class PartialAdam(PyroVAEModule):
    """An optimizer that leaves the decoder out."""

    def configure_optimizers(self):
        return torch.optim.Adam([p for n, p in self.model.named_parameters()
                                 if "decoder" not in n], lr=1e-3)


def one_line(info) -> str:
    msg = str(info.value)
    assert "\n" not in msg, msg
    return msg


def test_a_parameter_left_out_of_the_optimizer_is_refused(config, digits):
    module = PartialAdam(config, digits, epochs=1)
    with pytest.raises(ConfigError) as info:
        fit(module, 1)
    assert "would not be trained" in one_line(info) and "decoder" in one_line(info)


@pytest.mark.parametrize("options, words", [
    ({"ema": 0.99}, "train.ema"),
    ({"tensorboard": True}, "TensorBoardLogger"),
])
def test_settings_it_cannot_reproduce_are_refused(config, digits, options, words):
    with pytest.raises(ConfigError) as info:
        PyroVAEModule(config, digits, **options)
    assert words in one_line(info)


def test_a_kind_with_its_own_step_is_refused(digits):
    ssvae = load_config(ROOT / "configs" / "ssvae-digits.toml")
    with pytest.raises(ConfigError) as info:
        PyroVAEModule(ssvae, digits)
    assert "its own step" in one_line(info) and "pyrovae.train" in one_line(info)


def test_lightning_settings_that_change_the_step_are_refused(config, digits):
    module = PyroVAEModule(config, digits, epochs=1)
    with pytest.raises(ConfigError) as info:
        fit(module, 1, accumulate_grad_batches=2)
    assert "accumulate_grad_batches" in one_line(info)
    cosine = PyroVAEModule(config, digits, epochs=2, lr_schedule="cosine")
    with pytest.raises(ConfigError) as info:
        fit(cosine, 1)
    assert "max_epochs=2" in one_line(info)


def test_the_datamodule_serves_pyrovaes_batches(digits):
    """Epoch e's batches: the rows of train_data(e, seed) in randperm order seeded by (seed, e)."""
    loader = PyroVAEDataModule(digits, batch_size=64, seed=3).train_dataloader()
    loader.sampler.set_epoch(1)  # Lightning's current_epoch 1: pyrovae's epoch 2
    batches = list(loader)
    order = torch.randperm(digits.num_train, generator=torch.Generator().manual_seed(3 * 7919 + 2))
    x = digits.train_data(2, 3)
    assert len(batches) == digits.num_train // 64
    assert torch.equal(batches[1], x[order[64:128]])


def test_a_missing_lightning_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightning", None)  # `import lightning` now fails
    monkeypatch.delitem(sys.modules, "pyrovae.integrations.lightning")
    with pytest.raises(ConfigError) as info:
        importlib.import_module("pyrovae.integrations.lightning")
    assert one_line(info) == ("pyrovae.integrations.lightning needs PyTorch Lightning: "
                              "pip install 'pyrovae[lightning]'")
