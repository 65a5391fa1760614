"""Bounds and gradient estimators own their settings (issue 29): a plug-in bound and a plug-in
estimator, each with one setting declared by the component itself, are configurable from a
config file, ``--set`` and the API with no other file edited; release 0.1's flat
``[model.objective]`` tables (groups, renyi_alpha and ciwae_beta together) still load."""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass

import pytest
import torch

from pyrovae import load_config
from pyrovae.cli import main
from pyrovae.config import ObjectiveConfig, RunConfig, VAEConfig, apply_overrides
from pyrovae.objectives import BoundObjective, objective_for, objective_name
from pyrovae.objectives.bounds import Bound
from pyrovae.objectives.gradients import GradientEstimator
from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.registry import BOUNDS, GRADIENTS
from pyrovae.runtime.settings import setting

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@dataclass
class TemperatureSettings:
    """``[model.objective]`` of tempered: the temperature t."""

    t: float = setting(1.0, "tempered: the temperature t of log mean w^t / t", min=0.0,
                       exclusive_min=True, max=1.0)


class TemperedIWAE(Bound):
    """(1/t) log (1/K) sum_k w_k^t: a bound on log p(x) for 0 < t <= 1 (its settings are the
    registration's ``settings=`` capability)."""

    built: list = []

    def __init__(self, settings=None, /, **values):
        super().__init__(settings, **values)
        TemperedIWAE.built.append(self.settings.t)

    def value(self, log_w):
        t = self.settings.t
        return (torch.logsumexp(t * log_w, 0) - math.log(log_w.shape[0])) / t


@dataclass
class ScaleSettings:
    """``[model.objective]`` of scaled: the factor on the gradient."""

    scale: float = setting(1.0, "scaled: the reparameterization gradient times this",
                           min=0.0, exclusive_min=True)


class ScaledReparam(GradientEstimator):
    """The bound's reparameterization gradient times ``scale`` (its settings are the class's
    ``settings`` attribute)."""

    settings = ScaleSettings
    built: list = []

    def __init__(self, **settings):
        super().__init__(**settings)
        ScaledReparam.built.append(self.settings.scale)

    def surrogate(self, bound, draw):
        return self.settings.scale * bound.value(draw.log_w)


@pytest.fixture
def plugins():
    BOUNDS.register("tempered", TemperedIWAE, settings=TemperatureSettings)
    GRADIENTS.register("scaled", ScaledReparam, reparameterised=True)
    TemperedIWAE.built.clear()
    ScaledReparam.built.clear()
    yield
    BOUNDS.unregister("tempered")
    GRADIENTS.unregister("scaled")


CONFIG = """
[model]
latent_dim = 2
hidden = [8]
elbo = "trace"
num_particles = 2

[model.objective]
bound = "{bound}"
gradient = "{gradient}"
{settings}

[data]
name = "digits"
binarize = "dynamic"
train_size = 128
test_size = 64

[train]
epochs = 1
batch_size = 64
progress = false
"""


def write(tmp_path, bound="tempered", gradient="scaled", settings="t = 0.5\nscale = 2.0"):
    path = tmp_path / f"{bound}-{gradient}.toml"
    path.write_text(CONFIG.format(bound=bound, gradient=gradient, settings=settings))
    return str(path)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("pyrovae: error: "), err
    return lines[0]


def test_plugin_settings_reach_the_objects_through_a_config_file_and_set(plugins, tmp_path,
                                                                         capsys):
    config = write(tmp_path)
    out = tmp_path / "run"
    assert main(["train", config, "--out", str(out)]) == 0, capsys.readouterr().err
    assert set(TemperedIWAE.built) == {0.5} and set(ScaledReparam.built) == {2.0}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["objective"] == "tempered/scaled t=0.5 scale=2"
    assert metrics["objective_run"] == "BoundObjective" and math.isfinite(metrics["test_elbo"])
    table = tomllib.loads((out / "config.toml").read_text())["model"]["objective"]
    assert table == {"bound": "tempered", "gradient": "scaled", "biased": False, "t": 0.5,
                     "scale": 2.0}
    assert load_config(out / "config.toml").model.objective == ObjectiveConfig(
        bound="tempered", gradient="scaled", t=0.5, scale=2.0)

    TemperedIWAE.built.clear()
    again = tmp_path / "again"
    assert main(["train", config, "--set", "objective.t=0.25", "--out", str(again)]) == 0
    assert set(TemperedIWAE.built) == {0.25}
    assert json.loads((again / "metrics.json").read_text())["objective"] == (
        "tempered/scaled t=0.25 scale=2")


@pytest.mark.parametrize("sets, expected", [
    (["objective.t=-1"], "model.objective.t = -1"),
    (["objective.t=2"], "model.objective.t = 2"),
    (["objective.scale=0"], "model.objective.scale = 0"),
    (["objective.bound=iwae"], 'model.objective.t is a setting of bound "tempered"'),
])
def test_a_wrong_setting_is_refused_in_one_line(plugins, sets, expected, tmp_path, capsys):
    out = tmp_path / "run"
    args = [word for s in sets for word in ("--set", s)]
    assert main(["train", write(tmp_path), *args, "--out", str(out)]) == 2
    assert expected in one_line_error(capsys)
    assert not out.exists()


def test_a_setting_of_another_component_is_refused_in_one_line(plugins, tmp_path, capsys):
    config = write(tmp_path, "iwae", "reparam", settings="")
    assert main(["train", config, "--set", "objective.t=0.3", "--out", str(tmp_path / "r")]) == 2
    line = one_line_error(capsys)
    assert 'model.objective.t is a setting of bound "tempered"' in line
    assert 'not of bound "iwae"' in line
    with pytest.raises(ConfigError, match="is a setting of gradient estimator \"scaled\""):
        ObjectiveConfig(bound="tempered", scale=2.0)


def test_the_python_api_builds_plugins_from_their_settings(plugins):
    objective = BoundObjective("tempered", "scaled", 3, t=0.75, scale=4.0)
    assert objective.bound.settings.t == 0.75 and objective.estimator.settings.scale == 4.0
    assert objective.bound.particles == 3
    default = BoundObjective("tempered", "scaled", 2)  # the settings dataclasses' defaults
    assert (default.bound.settings.t, default.estimator.settings.scale) == (1.0, 1.0)
    with pytest.raises(TypeError, match="take no setting 'alpha'"):
        BoundObjective("tempered", "scaled", 2, alpha=0.3)
    model = VAEConfig(elbo="trace", num_particles=2,
                      objective={"bound": "tempered", "gradient": "scaled", "t": 0.5})
    assert objective_name(model) == "tempered/scaled t=0.5 scale=1 K=2"
    assert objective_for(model).bound.settings.t == 0.5
    assert apply_overrides(RunConfig(model=model), ["objective.scale=3"]).model.objective.scale == 3


def test_the_builtin_bounds_settings_and_labels():
    """The keys of release 0.1 (renyi_alpha, ciwae_beta, groups) are the bounds' own, and the
    run's label is unchanged."""
    cases = [({"bound": "renyi", "renyi_alpha": 0.3}, "renyi/reparam a=0.3 K=4"),
             ({"bound": "ciwae", "ciwae_beta": 0.25}, "ciwae/reparam b=0.25 K=4"),
             ({"bound": "miwae", "groups": 2}, "miwae/reparam M=2 K=4"),
             ({"bound": "piwae", "groups": 3, "gradient": "dreg"}, "piwae/dreg M=3 K=4"),
             ({"bound": "iwae", "gradient": "stl", "biased": True}, "iwae/stl (biased) K=4"),
             ({"bound": "iwae", "gradient": "dreg"}, "iwae/dreg K=4")]
    for table, label in cases:
        model = VAEConfig(elbo="trace", num_particles=4, objective=table)
        assert objective_name(model) == label
    model = VAEConfig(elbo="trace", num_particles=4, objective={"bound": "renyi",
                                                                 "renyi_alpha": 0.0})
    assert objective_for(model).bound.a == 1.0
    assert ObjectiveConfig(bound="renyi").renyi_alpha == 0.5
    assert not hasattr(ObjectiveConfig(bound="iwae"), "renyi_alpha")


def test_release_0_1_flat_objective_tables_still_load(tmp_path):
    """0.1 wrote every bound's settings in one table: the chosen bound's are kept."""
    flat = "groups = 1\nrenyi_alpha = 0.25\nciwae_beta = 0.5\nbiased = false"
    config = load_config(write(tmp_path, "renyi", "reparam", settings=flat))
    assert config.model.objective == ObjectiveConfig(bound="renyi", renyi_alpha=0.25)
    assert config.model.objective.settings() == {"renyi_alpha": 0.25}
    config = load_config(write(tmp_path, "iwae", "dreg", settings=flat))
    assert config.model.objective == ObjectiveConfig(bound="iwae", gradient="dreg")
    flat = "groups = 2\nrenyi_alpha = 0.5\nciwae_beta = 0.5\nbiased = false"
    config = load_config(write(tmp_path, "miwae", "reparam", settings=flat))
    assert config.model.objective.groups == 2
    assert objective_name(config.model) == "miwae/reparam M=2 K=2"
    # a bound switched with --set keeps only what the new bound takes
    switched = apply_overrides(config, ["objective.bound=renyi", "objective.renyi_alpha=0.3"])
    assert switched.model.objective.settings() == {"renyi_alpha": 0.3}
