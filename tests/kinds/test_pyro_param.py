"""Global ``pyro.param`` sites in a user module's model and guide (pyrovae/training/
global_params.py): trained to their known optimum, checkpointed, resumed bit for bit, restored
by ``pyrovae.load``, claimed afresh by each run, and refused in one line where they cannot be
trained or saved. A 4-dimensional linear-Gaussian model, 500 points: about a second a run."""

from __future__ import annotations

import io

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule, PyroParam, pyro_method
from torch import nn
from torch.distributions import transform_to

import pyrovae
from pyrovae.data.dataset import from_arrays
from pyrovae.data.sources import RawData
from pyrovae.evaluation import evaluate_elbo
from pyrovae.runtime.interface import InterfaceError
from pyrovae.runs import load_checkpoint
from pyrovae.runs.param_store import constraint_from_spec, constraint_spec
from pyrovae.training.guards import NonFiniteError
from pyrovae.api import resolve_config
from pyrovae.training.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

TRUE_SIGMA = 0.5
TRAIN = {"batch_size": 100, "lr": 0.05, "progress": False}  # 5 steps an epoch


class LinearGaussian(PyroModule):
    """z ~ N(0, I_D), x | z ~ N(z, sigma^2 I_D), sigma a global ``pyro.param`` of the model.
    So x ~ N(0, (1 + sigma^2) I): the maximum-likelihood sigma^2 is mean(x^2) - 1. The guide
    q(z|x) = N(a x + c, s^2 I) (a, c module parameters) holds the exact posterior
    N(x / (1 + sigma^2), sigma^2 / (1 + sigma^2) I), so the ELBO's optimum is the likelihood's;
    s is a global ``pyro.param`` of the guide."""

    elbo = "meanfield"  # closed-form KL, and 16 particles: gradients quiet enough that the fit
    num_particles = 16  # lands within 0.005 of the optimum in 300 steps

    def __init__(self, input_shape):
        super().__init__()
        self.input_shape = tuple(input_shape)
        d = self.input_shape[0]
        self.a = nn.Parameter(torch.full((d,), 0.5))
        self.c = nn.Parameter(torch.zeros(d))

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
            pyro.sample("z", dist.Normal(self.a * x + self.c, scale).to_event(1))


class LateParam(LinearGaussian):
    """A guide whose pyro.param exists only in training mode: the set-up run (eval mode) does
    not see it, so it would never be trained."""

    def guide(self, x, n_data=None):
        shift = pyro.param("late", torch.tensor(0.0)) if self.training else 0.0
        scale = pyro.param("q_scale", torch.tensor(1.0), constraint=constraints.positive)
        with self._plate(x, n_data):
            pyro.sample("z", dist.Normal(self.a * x + self.c + shift, scale).to_event(1))


class StackedConstraint(LinearGaussian):
    """sigma and a shift in one pyro.param under constraints.stack, which a checkpoint cannot
    record (its argument is a list of constraints)."""

    def model(self, x, n_data=None):
        both = pyro.param("both", torch.tensor([1.0, 0.0]),
                          constraint=constraints.stack([constraints.positive, constraints.real]))
        with self._plate(x, n_data):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[1]), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z + both[1], both[0]).to_event(1), obs=x)


class WithPyroParam(LinearGaussian):
    """sigma a PyroParam of the module, read inside pyro_methods: the PyroModule then keeps it
    in the param store too, under the name "sigma", and adopts a tensor it finds there."""

    def __init__(self, input_shape):
        super().__init__(input_shape)
        self.sigma = PyroParam(torch.tensor(1.0), constraint=constraints.positive)

    @pyro_method
    def model(self, x, n_data=None):
        with self._plate(x, n_data):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[1]), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, self.sigma).to_event(1), obs=x)

    @pyro_method
    def guide(self, x, n_data=None):
        super().guide(x, n_data)


def gaussian_data(scale: float = 1.0):
    g = torch.Generator().manual_seed(0)
    x = scale * torch.randn(600, 4, generator=g) * (1 + TRUE_SIGMA ** 2) ** 0.5
    return from_arrays("gauss", RawData(x[:500].numpy(), x[500:].numpy()))


@pytest.fixture(scope="module")
def data():
    return gaussian_data()


def fresh(data, seed: int = 0) -> LinearGaussian:
    pyro.set_rng_seed(seed)
    return LinearGaussian(data.shape)


def store_value(name: str) -> torch.Tensor:
    return pyro.param(name).detach().clone()


def assert_equal_dicts(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_model_and_guide_pyro_params_reach_the_maximum_likelihood_fit(data):
    """sigma (model side) lands on its maximum-likelihood value, not on its start (1.0) nor on
    the value the data were drawn with; the guide's scale on the exact posterior's."""
    mle = float((data.train_x.double() ** 2).mean() - 1) ** 0.5
    assert abs(mle - TRUE_SIGMA) > 0.04  # (the data tell the MLE from the truth)
    pyrovae.train(fresh(data), data, epochs=60, lr_schedule="cosine", **TRAIN)
    sigma, q_scale = float(store_value("sigma")), float(store_value("q_scale"))
    assert sigma == pytest.approx(mle, abs=0.005)
    assert q_scale == pytest.approx((mle ** 2 / (1 + mle ** 2)) ** 0.5, abs=0.005)


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_is_bitwise_identical_with_pyro_params(data, tmp_path, ema):
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    pyrovae.train(fresh(data), data, out=whole, epochs=4, ema=ema, **TRAIN)
    pyrovae.train(fresh(data), data, out=stopped, epochs=2, ema=ema, **TRAIN)
    pyro.get_param_store()["sigma"] = torch.tensor(7.0)  # what a later run might leave
    pyrovae.train(fresh(data, seed=123), data, out=stopped, resume=True, epochs=4, ema=ema,
                  **TRAIN)  # (its initial values are replaced by the checkpoint's)
    a, b = load_checkpoint(whole), load_checkpoint(stopped)
    assert a["step"] == b["step"] == 4 * 5
    assert sorted(a["pyro_params"]) == ["q_scale", "sigma"]
    for key in ("pyro_params", "model") + (("train_pyro_params", "train_model") if ema else ()):
        assert_equal_dicts(a[key], b[key])
    assert a["pyro_params"]["sigma"] != 0.0  # trained: log(sigma) moved from log(1.0)
    if ema:  # the run is the average; training goes on from the live values
        assert not torch.equal(a["pyro_params"]["sigma"], a["train_pyro_params"]["sigma"])
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa
    assert strip(a["history"]) == strip(b["history"])


def test_checkpoint_holds_the_pyro_params_and_load_restores_them(data, tmp_path):
    run = pyrovae.train(fresh(data), data, out=tmp_path / "run", epochs=3, **TRAIN)
    trained = {name: store_value(name) for name in ("sigma", "q_scale")}
    saved = load_checkpoint(run.path)
    assert saved["pyro_constraints"] == {"sigma": {"name": "positive"},
                                         "q_scale": {"name": "positive"}}
    for name, value in trained.items():  # the unconstrained value: log(sigma)
        assert torch.equal(transform_to(constraints.positive)(saved["pyro_params"][name]), value)
    pyro.clear_param_store()  # a new process...
    pyro.get_param_store()["sigma"] = torch.tensor(3.0)  # ...or one holding another value
    loaded = pyrovae.load(run.path, trust_module=True)
    for name, value in trained.items():
        assert torch.equal(store_value(name), value), name
    # the evaluation path sees the trained values: the run's own last test ELBO, again
    again = evaluate_elbo(loaded.vae, data.test_data(), run.config.train.eval_batch_size,
                          seed=run.config.train.seed)
    assert again["elbo"] == pytest.approx(run.history[-1]["test_elbo"], rel=1e-6)


def test_a_new_run_starts_from_the_codes_initial_values(data):
    """The param store is global: a run claims its names, so it does not inherit the value
    an earlier run (or load) left there, and Adam steps the very tensor the store holds."""
    pyro.get_param_store()["sigma"] = torch.tensor(0.3)
    module = fresh(data)
    trainer = Trainer(resolve_config(module, data, {"progress": False}), data, None, module)
    assert float(store_value("sigma")) == 1.0 and float(store_value("q_scale")) == 1.0
    stepped = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    for name, tensor in pyro.get_param_store().named_parameters():
        if name in ("sigma", "q_scale"):
            assert id(tensor) in stepped, name


def test_a_pyroparam_is_trained_afresh_by_each_run_and_loaded_as_saved(data, tmp_path):
    """A PyroModule adopts the tensor the param store holds under its PyroParam's name: a run
    drops the store's entry first (else a second run would start from, and never step, the
    first run's tensor), and so does loading a run (else it would take another run's)."""
    runs = []
    for name in ("first", "second"):
        pyro.set_rng_seed(0)
        runs.append(pyrovae.train(WithPyroParam(data.shape), data, out=tmp_path / name,
                                  epochs=2, **TRAIN))
    first, second = (load_checkpoint(run.path) for run in runs)
    assert first["pyro_module_params"] == ["sigma"]
    assert_equal_dicts(first["model"], second["model"])
    assert first["model"]["sigma_unconstrained"] != 0.0  # trained
    pyro.set_rng_seed(0)
    other = pyrovae.train(WithPyroParam(data.shape), gaussian_data(scale=2.0), epochs=2, **TRAIN)
    assert float(other.vae.sigma.detach()) > 1.0  # the store now holds another run's sigma
    loaded = pyrovae.load(runs[0].path, trust_module=True)
    again = evaluate_elbo(loaded.vae, data.test_data(), runs[0].config.train.eval_batch_size,
                          seed=runs[0].config.train.seed)
    assert again["elbo"] == pytest.approx(runs[0].history[-1]["test_elbo"], rel=1e-6)


def test_a_non_finite_pyro_param_stops_training_before_it_is_checkpointed(data, tmp_path,
                                                                         monkeypatch):
    """sigma turned NaN by the last step of epoch 2: every loss so far was finite, so only
    the check of the parameters themselves stops the NaN reaching the checkpoint."""
    real_step = torch.optim.Adam.step

    def poisoned(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        poisoned.calls += 1
        if poisoned.calls == 10:
            with torch.no_grad():
                dict(pyro.get_param_store().named_parameters())["sigma"].fill_(float("nan"))
        return out

    poisoned.calls = 0
    monkeypatch.setattr(torch.optim.Adam, "step", poisoned)
    with pytest.raises(NonFiniteError, match="non-finite parameters: pyro.param 'sigma'"):
        pyrovae.train(fresh(data), data, out=tmp_path / "nan", epochs=3, **TRAIN)
    saved = load_checkpoint(tmp_path / "nan")
    assert saved["step"] == 5  # epoch 1's end; epoch 2's was refused
    assert all(torch.isfinite(v).all() for v in saved["pyro_params"].values())


def test_a_pyro_param_made_after_the_set_up_run_is_refused_at_the_first_step(data, tmp_path):
    pyro.set_rng_seed(0)
    with pytest.raises(InterfaceError, match="pyro.param 'late' first appeared after") as info:
        pyrovae.train(LateParam(data.shape), data, out=tmp_path / "late", epochs=1, **TRAIN)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "late" / "checkpoint.pt").exists()


def test_a_constraint_a_checkpoint_cannot_record_is_refused_before_training(data, tmp_path):
    pyro.set_rng_seed(0)
    with pytest.raises(InterfaceError, match="pyro.param 'both' has constraint .* which a "
                                             "checkpoint cannot record") as info:
        pyrovae.train(StackedConstraint(data.shape), data, out=tmp_path / "stacked", epochs=1,
                      **TRAIN)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "stacked" / "config.toml").exists()


@pytest.mark.parametrize("constraint", [
    constraints.real, constraints.positive, constraints.unit_interval, constraints.simplex,
    constraints.greater_than(-1.5), constraints.interval(0.0, 2.0),
    constraints.independent(constraints.positive, 1), constraints.lower_cholesky])
def test_constraints_are_recorded_as_plain_data_and_rebuilt(constraint):
    spec = constraint_spec(constraint)
    assert spec is not None
    buffer = io.BytesIO()
    torch.save(spec, buffer)
    buffer.seek(0)
    rebuilt = constraint_from_spec(torch.load(buffer, weights_only=True))
    assert type(rebuilt) is type(constraint)
    u = torch.randn(3, 3)
    assert torch.equal(transform_to(rebuilt)(u), transform_to(constraint)(u))
