"""Plug-ins written outside the package (issue 29): a prior, a likelihood, a guide family, a KL
schedule and a model kind, each one class (or function) with its own setting plus its
registration, defined here in the test file with no edit to pyrovae/, then used end to end: a
TOML config file, ``pyrovae train``, ``--set`` of the setting, a bad value refused in one line,
``pyrovae evaluate`` on the run, and ``pyrovae --plugin MODULE`` in a separate process."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule
from torch import nn

import pyrovae
from pyrovae.cli import main
from pyrovae.components.likelihoods import BernoulliLikelihood
from pyrovae.components.posteriors import Posterior, register_posterior
from pyrovae.components.priors import Prior, register_prior
from pyrovae.config.sections import OBJECTIVES, kind_field, particles_field
from pyrovae.runtime.interface import DATA_PLATE
from pyrovae.runtime.registry import (KL_SCHEDULES, LIKELIHOODS, MODEL_KINDS, POSTERIORS,
                                      PRIORS)
from pyrovae.runtime.settings import setting
from tests.support.one_line import assert_one_line_error

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = """\
[data]
name = "digits"
train_size = 128
test_size = 64

[train]
epochs = 1
batch_size = 64
progress = false
"""


# ---- a prior: p(z) = prod_d Laplace(0, scale) -------------------------------------------------

@dataclass
class LaplaceSettings:
    """``[model.prior]`` of test-laplace."""

    scale: float = setting(1.0, "scale b of every dimension", min=0.0, exclusive_min=True)


class LaplacePrior(Prior):  # analytic_kl = False: the ELBO takes a Monte Carlo KL
    settings = LaplaceSettings

    def __init__(self, latent_dim: int, scale: float):
        super().__init__()
        self.latent_dim, self.scale = latent_dim, float(scale)
        self.register_buffer("loc", torch.zeros(latent_dim))

    @classmethod
    def build(cls, config, latent_dim, encoder, input_shape):
        return cls(latent_dim, config.scale)

    def forward(self):
        return dist.Laplace(self.loc, self.scale * torch.ones_like(self.loc),
                            validate_args=False).to_event(1)


# ---- a likelihood: Bernoulli(sigmoid(gain * out)) ---------------------------------------------

@dataclass
class GainSettings:
    """``[model.likelihood]`` of test-tempered-bernoulli."""

    gain: float = setting(1.0, "multiplies the decoder's logits", min=0.0, exclusive_min=True)


class TemperedBernoulli(BernoulliLikelihood):
    name = "test-tempered-bernoulli"
    settings = GainSettings

    def __init__(self, gain: float = 1.0):
        super().__init__()
        self.gain = float(gain)

    @classmethod
    def build(cls, config, input_dim):
        return cls(config.gain)

    def forward(self, out):
        return super().forward(self.gain * out)

    def mean(self, out):
        return super().mean(self.gain * out)


# ---- a guide family: N(mu, diag((temperature * sigma)^2)) -------------------------------------

@dataclass
class TemperatureSettings:
    """``[model.posterior]`` of test-tempered."""

    temperature: float = setting(1.0, "multiplies the encoder's scale", min=0.0,
                                 exclusive_min=True)


class TemperedPosterior(Posterior):
    analytic_kl = diagonal = gaussian_head = True
    settings = TemperatureSettings

    def __init__(self, latent_dim: int, temperature: float = 1.0):
        super().__init__(latent_dim)
        self.temperature = float(temperature)

    @classmethod
    def build(cls, config, latent_dim):
        return cls(latent_dim, config.temperature)

    @classmethod
    def outputs(cls, config, latent_dim):
        return 2 * latent_dim

    def forward(self, encoded):
        return dist.Normal(*self.moments(encoded), validate_args=False).to_event(1)

    def moments(self, encoded):
        loc, scale = encoded
        return loc, self.temperature * scale


# ---- a KL schedule: beta_t = beta * min(1, t / steps)^power -----------------------------------

@dataclass
class PowerSettings:
    """``[model.kl]`` of schedule test-power."""

    power: float = setting(2.0, "exponent of the warm-up curve", min=0.0, exclusive_min=True)


SCHEDULE_CALLS: list = []


def power_schedule(kl, step):
    SCHEDULE_CALLS.append((kl.power, step))
    return kl.beta * min(1.0, step / 4) ** kl.power


# ---- a model kind: x ~ Bernoulli(decoder(z)), z ~ N(0, I), q(z|x) Gaussian --------------------

@dataclass
class TinyConfig:
    """``[model]`` of kind test-tiny: its own setting ``latent``, and the keys every kind's
    config holds (``kind``; ``elbo`` and ``num_particles``, which the trainer's objective reads)."""

    kind: str = kind_field("test-tiny")
    latent: int = setting(2, "latent dimensions", min=1)
    elbo: str = setting("trace", "the ELBO's Pyro estimator", choices=OBJECTIVES)
    num_particles: int = particles_field()


class Tiny(PyroModule):
    def __init__(self, config, input_shape):
        super().__init__()
        self.config, self.input_shape = config, tuple(input_shape)
        d = int(torch.tensor(input_shape).prod())
        self.encoder = nn.Linear(d, 2 * config.latent)
        self.decoder = nn.Linear(config.latent, d)

    def model(self, x, n_data=None):
        pyro.module("decoder", self.decoder)
        with pyro.plate(DATA_PLATE, n_data or x.shape[0], subsample_size=x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], self.config.latent), 1.0)
                            .to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z), validate_args=False)
                        .to_event(1), obs=x)

    def guide(self, x, n_data=None):
        pyro.module("encoder", self.encoder)
        loc, raw = self.encoder(x).chunk(2, -1)
        with pyro.plate(DATA_PLATE, n_data or x.shape[0], subsample_size=x.shape[0]):
            pyro.sample("z", dist.Normal(loc, nn.functional.softplus(raw) + 1e-4).to_event(1))


@pytest.fixture(scope="module", autouse=True)
def tiny_kind():
    MODEL_KINDS.register("test-tiny", Tiny, config=TinyConfig)
    yield
    MODEL_KINDS.unregister("test-tiny")


@pytest.fixture(scope="module", autouse=True)
def plugins():
    """Register this file's components for its tests only (a plug-in module would register
    them with the decorators at import: ``@register_prior("test-laplace")`` and the like; here
    that would leak them into the registries every other test file reads at collection)."""
    register_prior("test-laplace")(LaplacePrior)
    LIKELIHOODS.register("test-tempered-bernoulli", TemperedBernoulli, discrete=True)
    register_posterior("test-tempered")(TemperedPosterior)
    KL_SCHEDULES.register("test-power", power_schedule, settings=PowerSettings)
    yield
    PRIORS.unregister("test-laplace")
    LIKELIHOODS.unregister("test-tempered-bernoulli")
    POSTERIORS.unregister("test-tempered")
    KL_SCHEDULES.unregister("test-power")


# ---- the runs -----------------------------------------------------------------------------------

VAE_TOML = TINY + """
[model]
latent_dim = 2
hidden = [8]
elbo = "trace"

[model.prior]
name = "test-laplace"
scale = 0.5

[model.likelihood]
name = "test-tempered-bernoulli"
gain = 2.0

[model.posterior]
name = "test-tempered"
temperature = 0.8

[model.kl]
schedule = "test-power"
power = 3.0
"""


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vae")
    config = folder / "plugins.toml"
    config.write_text(VAE_TOML)
    SCHEDULE_CALLS.clear()
    assert main(["train", str(config), "--out", str(folder / "run")]) == 0
    return config, folder / "run"


def test_settings_reach_the_components(vae_run):
    _, out = vae_run
    model = pyrovae.load(out).model
    assert isinstance(model.prior, LaplacePrior) and model.prior.scale == 0.5
    assert isinstance(model.likelihood, TemperedBernoulli) and model.likelihood.gain == 2.0
    assert isinstance(model.posterior, TemperedPosterior) and model.posterior.temperature == 0.8
    assert SCHEDULE_CALLS and {p for p, _ in SCHEDULE_CALLS} == {3.0}


def test_evaluate_runs_on_the_plugin_run(vae_run, capsys):
    _, out = vae_run
    assert main(["evaluate", str(out), "--nll-samples", "25", "--quiet", "--out",
                 str(out.parent / "eval")]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_set_edits_each_plugin_setting(vae_run, tmp_path):
    config, _ = vae_run
    out = tmp_path / "set"
    SCHEDULE_CALLS.clear()
    assert main(["train", str(config), "--out", str(out), "--set", "model.prior.scale=0.25",
                 "--set", "model.likelihood.gain=1.5", "--set", "posterior.temperature=0.5",
                 "--set", "model.kl.power=1.0"]) == 0
    model = pyrovae.load(out).model
    assert (model.prior.scale, model.likelihood.gain, model.posterior.temperature) == (
        0.25, 1.5, 0.5)
    assert {p for p, _ in SCHEDULE_CALLS} == {1.0}


@pytest.mark.parametrize("key", ["model.prior.scale", "model.likelihood.gain",
                                 "model.posterior.temperature", "model.kl.power"])
def test_a_bad_setting_is_refused_in_one_line(vae_run, tmp_path, capsys, key):
    config, _ = vae_run
    assert main(["train", str(config), "--out", str(tmp_path / "o"), "--set", f"{key}=-1"]) == 2
    line = assert_one_line_error(capsys.readouterr().err)
    assert key in line and "-1" in line, line
    assert not (tmp_path / "o").exists()


def test_a_bad_setting_in_the_file_is_refused_in_one_line(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text(VAE_TOML.replace("scale = 0.5", "scale = 0"))
    assert main(["train", str(config), "--out", str(tmp_path / "o")]) == 2
    line = assert_one_line_error(capsys.readouterr().err)
    assert "model.prior.scale" in line, line


# ---- the model kind -----------------------------------------------------------------------------

KIND_TOML = TINY + """
[model]
kind = "test-tiny"
latent = 3
"""


@pytest.fixture(scope="module")
def kind_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kind")
    config = folder / "kind.toml"
    config.write_text(KIND_TOML)
    assert main(["train", str(config), "--out", str(folder / "run")]) == 0
    return config, folder / "run"


def test_a_plugin_kind_trains_loads_and_evaluates(kind_run, capsys):
    _, out = kind_run
    model = pyrovae.load(out).model
    assert isinstance(model, Tiny) and model.config.latent == 3
    assert model.encoder.out_features == 6
    assert main(["evaluate", str(out), "--nll-samples", "25", "--quiet", "--out",
                 str(out.parent / "eval")]) == 0


def test_set_and_a_bad_value_of_the_kinds_setting(kind_run, tmp_path, capsys):
    config, _ = kind_run
    assert main(["train", str(config), "--out", str(tmp_path / "a"), "--set",
                 "model.latent=4"]) == 0
    assert pyrovae.load(tmp_path / "a").model.config.latent == 4
    capsys.readouterr()
    assert main(["train", str(config), "--out", str(tmp_path / "b"), "--set",
                 "model.latent=0"]) == 2
    line = assert_one_line_error(capsys.readouterr().err)
    assert "model.latent" in line, line


# ---- plug-ins in another process: pyrovae --plugin MODULE ---------------------------------------

PLUGIN_MODULE = '''
from dataclasses import dataclass

import pyro.distributions as dist
import torch

from pyrovae.components.priors import Prior, register_prior
from pyrovae.runtime.settings import setting


@dataclass
class WideSettings:
    width: float = setting(1.0, "the prior's standard deviation", min=0.0, exclusive_min=True)


@register_prior("test-wide")
class WidePrior(Prior):
    settings = WideSettings

    def __init__(self, latent_dim, width):
        super().__init__()
        self.latent_dim, self.width = latent_dim, width
        self.register_buffer("loc", torch.zeros(latent_dim))

    @classmethod
    def build(cls, config, latent_dim, encoder, input_shape):
        return cls(latent_dim, config.width)

    def forward(self):
        return dist.Normal(self.loc, self.width).to_event(1)
'''


def test_plugin_option_in_a_separate_process(tmp_path, capsys):
    (tmp_path / "plugin_mod.py").write_text(PLUGIN_MODULE)
    config = tmp_path / "wide.toml"
    config.write_text(TINY + '\n[model]\nlatent_dim = 2\nhidden = [8]\nelbo = "trace"\n\n'
                      '[model.prior]\nname = "test-wide"\nwidth = 2.0\n')
    done = subprocess.run([sys.executable, "-m", "pyrovae", "--plugin", "plugin_mod", "train",
                           "wide.toml", "--out", "run", "--set", "model.prior.width=3.0"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYROVAE_PLUGINS": ""})
    assert done.returncode == 0, done.stderr
    assert 'width = 3.0' in (tmp_path / "run" / "config.toml").read_text()
    # opened later without the plug-in: one line naming the component and --plugin
    assert "test-wide" not in PRIORS
    assert main(["evaluate", str(tmp_path / "run"), "--quiet"]) == 2
    line = assert_one_line_error(capsys.readouterr().err)
    assert "'test-wide'" in line and "--plugin" in line, line


def test_a_plugin_that_cannot_be_imported_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # (main puts the current folder on it)
    assert main(["--plugin", "no_such_plugin_mod", "evaluate", "nowhere"]) == 2
    line = assert_one_line_error(capsys.readouterr().err)
    assert "--plugin no_such_plugin_mod" in line and "No module named" in line, line
    (tmp_path / "broken_plugin_mod.py").write_text("raise ValueError('bad\\nplug-in')\n")
    assert main(["--plugin", "broken_plugin_mod", "evaluate", "nowhere"]) == 2
    line = assert_one_line_error(capsys.readouterr().err)
    assert "broken_plugin_mod" in line and "ValueError: bad plug-in" in line, line


def test_plugins_from_the_environment(tmp_path, capsys, monkeypatch):
    (tmp_path / "env_plugin_mod.py").write_text(
        "from pyrovae.runtime.registry import KL_SCHEDULES\n"
        "KL_SCHEDULES.register('test-env', lambda kl, step: kl.beta)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYROVAE_PLUGINS", " env_plugin_mod , ")
    monkeypatch.setattr(sys, "path", list(sys.path))
    try:
        assert main(["evaluate", "nowhere"]) == 2  # (the command fails; the plug-in loaded)
        assert "test-env" in KL_SCHEDULES
    finally:
        KL_SCHEDULES.unregister("test-env")
        sys.modules.pop("env_plugin_mod", None)
