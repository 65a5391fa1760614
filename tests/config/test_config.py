"""Config dataclasses, TOML files and ``--set`` overrides (pyrovae/config.py)."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from pyrovae import DataConfig, RunConfig, TrainConfig, VAEConfig, load_config
from pyrovae.config import KLConfig, PriorConfig
from pyrovae.config import (ACTIVATIONS, BINARIZE, DEVICES, LIKELIHOODS, NETWORKS, OBJECTIVES,
                            SECTIONS, _toml_value, apply_overrides, parse_value,
                            to_toml)
from pyrovae.runtime.errors import ConfigError, PyroVAEError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def first_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message, f"error message spans lines: {message!r}"
    return message


# ---- defaults and round trip ---------------------------------------------------------------


def test_defaults_build_with_documented_values():
    model, data, train = VAEConfig(), DataConfig(), TrainConfig()
    assert (model.latent_dim, model.network, model.hidden, model.likelihood, model.elbo) == (
        50, "mlp", (400,), "bernoulli", "meanfield")
    assert model.channels == (32, 64) and isinstance(model.channels, tuple)
    assert (data.name, data.binarize, data.train_size, data.seed) == ("mnist", "dynamic", 0, 0)
    assert (train.epochs, train.batch_size, train.device, train.progress) == (10, 128, "cpu", True)
    assert isinstance(train.lr, float) and train.lr == pytest.approx(1e-3)
    run = RunConfig()
    assert run.model == model and run.data == data and run.train == train


def test_lists_become_tuples_and_integral_floats_become_ints():
    model = VAEConfig(hidden=[256, 128], channels=[8], latent_dim=2.0)
    assert model.hidden == (256, 128) and model.channels == (8,)
    assert model.latent_dim == 2 and type(model.latent_dim) is int
    assert VAEConfig(hidden=64).hidden == (64,)  # a single number is a one-layer list


def test_to_dict_has_every_section_and_field():
    raw = RunConfig().to_dict()
    assert list(raw) == ["model", "data", "train"]
    for name, cls in SECTIONS.items():
        cls = cls or VAEConfig  # [model]: the kind's dataclass, "vae" by default
        assert list(raw[name]) == [f.name for f in dataclasses.fields(cls)]


def nondefault_config() -> RunConfig:
    return RunConfig(
        model=VAEConfig(latent_dim=3, network="conv", hidden=(256, 128), channels=(16, 8, 4),
                        activation="gelu", likelihood="gaussian", sigma=0.25, elbo="tracegraph",
                        num_particles=4, kl={"beta": 0.5}),
        data=DataConfig(name='C:\\data\\my "set".npy', path="/tmp/ünïcode dir", binarize="static",
                        train_size=100, test_size=7, seed=11),
        train=TrainConfig(epochs=3, batch_size=32, lr=2.5e-4, seed=5, device="cpu",
                          eval_batch_size=17, log_every=3, progress=False))


@pytest.mark.parametrize("config", [RunConfig(), nondefault_config()], ids=["default", "custom"])
def test_to_toml_file_round_trip(tmp_path, config):
    text = to_toml(config)

    def listed(v):  # TOML has arrays, not tuples (nested tables too: model.posterior)
        if isinstance(v, dict):
            return {k: listed(x) for k, x in v.items()}
        return [listed(x) for x in v] if isinstance(v, (tuple, list)) else v

    assert tomllib.loads(text) == listed(config.to_dict())
    loaded = load_config(write(tmp_path / "run.toml", text))
    assert loaded == config
    assert loaded.model.hidden == config.model.hidden and isinstance(loaded.model.hidden, tuple)
    assert to_toml(loaded) == text


def test_round_trip_of_strings_with_control_characters(tmp_path):
    config = RunConfig(data=DataConfig(name="odd\tname\nwith\x7fcontrols.npy"))
    assert load_config(write(tmp_path / "run.toml", to_toml(config))) == config


def test_round_trip_of_dict_form():
    config = nondefault_config()
    assert RunConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_load_and_round_trip(tmp_path, path):
    config = load_config(path)
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    def tuples(value):  # TOML lists, nested ones too, load as tuples
        return tuple(tuples(v) for v in value) if isinstance(value, list) else value

    def check(obj, body, where):  # every key written in the file is what was loaded
        for key, value in body.items():
            got = getattr(obj, key)
            if isinstance(value, dict):
                check(got, value, f"{where}.{key}")
            elif dataclasses.is_dataclass(got):  # shorthand: prior = "normal"
                assert got.name == value, (where, key)
            else:
                assert got == tuples(value), (where, key)

    for section, body in raw.items():
        check(getattr(config, section), body, section)
    assert load_config(write(tmp_path / "again.toml", to_toml(config))) == config


def test_missing_sections_and_keys_take_defaults(tmp_path):
    config = load_config(write(tmp_path / "small.toml", "[model]\nlatent_dim = 4\n"))
    assert config == RunConfig(model=VAEConfig(latent_dim=4))
    assert load_config(write(tmp_path / "empty.toml", "")) == RunConfig()


def test_integer_for_float_field_is_accepted_as_float(tmp_path):
    config = load_config(write(tmp_path / "c.toml", "[train]\nlr = 1\n[model.kl]\nbeta = 2\n"))
    assert config.train.lr == 1.0 and type(config.train.lr) is float
    assert config.model.kl.beta == 2.0 and type(config.model.kl.beta) is float
    assert type(TrainConfig(lr=1).lr) is float
    assert type(apply_overrides(RunConfig(), ["lr=1"]).train.lr) is float


# ---- bad values ----------------------------------------------------------------------------


BAD_VALUES = [
    # (section class, field, value, key in the message, what the message must say is allowed)
    (VAEConfig, "latent_dim", 0, "model.latent_dim", [">= 1"]),
    (VAEConfig, "latent_dim", -3, "model.latent_dim", [">= 1"]),
    (TrainConfig, "lr", -1, "train.lr", ["> 0"]),
    (TrainConfig, "lr", 0, "train.lr", ["> 0"]),
    (TrainConfig, "lr", 0.0, "train.lr", ["> 0"]),
    (TrainConfig, "batch_size", 0, "train.batch_size", [">= 1"]),
    (TrainConfig, "epochs", 0, "train.epochs", [">= 1"]),
    (KLConfig, "beta", -0.5, "model.kl.beta", [">= 0"]),
    (VAEConfig, "num_particles", 0, "model.num_particles", [">= 1"]),
    (DataConfig, "train_size", -1, "data.train_size", [">= 0"]),
    (VAEConfig, "elbo", "foo", "model.elbo", list(OBJECTIVES)),
    (VAEConfig, "likelihood", "poisson", "model.likelihood", list(LIKELIHOODS)),
    (VAEConfig, "network", "resnet", "model.network", list(NETWORKS)),
    (VAEConfig, "activation", "sigmoid", "model.activation", list(ACTIVATIONS)),
    (PriorConfig, "name", "bogus", "model.prior.name", ["normal"]),
    (DataConfig, "binarize", "yes", "data.binarize", list(BINARIZE)),
    (TrainConfig, "device", "tpu", "train.device", list(DEVICES)),
    (VAEConfig, "hidden", [0], "model.hidden", [">= 1"]),
    (VAEConfig, "hidden", [64, -2], "model.hidden", [">= 1"]),
    (VAEConfig, "channels", [32, 0], "model.channels", [">= 1"]),
    # wrong types
    (VAEConfig, "latent_dim", "ten", "model.latent_dim", ["integer"]),
    (VAEConfig, "latent_dim", 2.5, "model.latent_dim", ["integer"]),
    (VAEConfig, "latent_dim", True, "model.latent_dim", ["integer"]),
    (TrainConfig, "progress", "yes", "train.progress", ["true or false"]),
    (TrainConfig, "progress", 1, "train.progress", ["true or false"]),
    (VAEConfig, "hidden", "400", "model.hidden", ["list"]),
    (VAEConfig, "hidden", [64, "32"], "model.hidden", ["integer"]),
    (VAEConfig, "hidden", [64, 2.5], "model.hidden", ["integer"]),
    (TrainConfig, "lr", "fast", "train.lr", ["number"]),
    (TrainConfig, "lr", True, "train.lr", ["number"]),
    (TrainConfig, "lr", float("nan"), "train.lr", ["finite"]),
    (TrainConfig, "lr", float("inf"), "train.lr", ["finite"]),
    (KLConfig, "beta", float("nan"), "model.kl.beta", ["finite"]),
    (DataConfig, "name", 3, "data.name", ["string"]),
]


@pytest.mark.parametrize("value, allowed", [(0.0, "> 0"), (float("inf"), "finite")])
def test_a_likelihood_setting_is_checked_where_it_lives(tmp_path, value, allowed):
    """sigma is the gaussian likelihood's own setting: [model.likelihood], checked there; the
    flat model.sigma of release 0.1 is folded into it and checked the same way."""
    for build in (lambda: VAEConfig(likelihood={"name": "gaussian", "sigma": value}),
                  lambda: VAEConfig(likelihood="gaussian", sigma=value),
                  lambda: load_config(write(tmp_path / "bad.toml", f"[model.likelihood]\nname = "
                                            f"\"gaussian\"\nsigma = {_toml_value(value)}\n"))):
        with pytest.raises(ConfigError) as err:
            build()
        message = first_line(err)
        assert message.startswith("model.likelihood.sigma") and allowed in message, message


@pytest.mark.parametrize("cls,name,value,key,allowed", BAD_VALUES,
                         ids=[f"{b[1]}={b[2]!r}" for b in BAD_VALUES])
def test_bad_value_raises_config_error_naming_key_and_allowed(cls, name, value, key, allowed):
    with pytest.raises(ConfigError) as err:
        cls(**{name: value})
    message = first_line(err)
    assert message.startswith(key), message
    for word in allowed:
        assert word in message, (word, message)
    assert isinstance(err.value, PyroVAEError) and isinstance(err.value, ValueError)


@pytest.mark.parametrize("cls,name,value,key,allowed", BAD_VALUES,
                         ids=[f"{b[1]}={b[2]!r}" for b in BAD_VALUES])
def test_bad_value_in_toml_file_raises(tmp_path, cls, name, value, key, allowed):
    section = key.rsplit(".", 1)[0]  # e.g. model.kl for model.kl.beta
    path = write(tmp_path / "bad.toml", f"[{section}]\n{name} = {_toml_value(value)}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = first_line(err)
    assert message.startswith(key), message
    for word in allowed:
        assert word in message, (word, message)


def test_elbo_message_lists_every_objective():
    with pytest.raises(ConfigError, match="model.elbo") as err:
        VAEConfig(elbo="foo")
    message = str(err.value)
    assert "'foo'" in message
    assert message.endswith(", ".join(OBJECTIVES))


def test_valid_choices_are_all_accepted():
    for elbo in OBJECTIVES:
        assert VAEConfig(elbo=elbo).elbo == elbo
    for binarize in BINARIZE:
        assert DataConfig(binarize=binarize).binarize == binarize
    assert KLConfig(beta=0).beta == 0.0  # beta's bound is inclusive, lr's is not
    assert TrainConfig(lr=1e-12).lr == 1e-12


def test_conv_network_needs_channels():
    with pytest.raises(ConfigError, match=r"model\.channels.*conv"):
        VAEConfig(network="conv", channels=[])
    assert VAEConfig(network="mlp", hidden=[]).hidden == ()  # a linear VAE is allowed


# ---- unknown keys and sections -------------------------------------------------------------


def test_unknown_key_in_section_suggests_nearest(tmp_path):
    path = write(tmp_path / "typo.toml", "[model]\nlatnet_dim = 10\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = first_line(err)
    assert "'model.latnet_dim'" in message
    assert "did you mean 'model.latent_dim'" in message


@pytest.mark.parametrize("section,key,suggestion", [
    ("train", "epoch", "train.epochs"),
    ("train", "batchsize", "train.batch_size"),
    ("data", "binarise", "data.binarize"),
])
def test_unknown_keys_in_other_sections(tmp_path, section, key, suggestion):
    with pytest.raises(ConfigError, match=f"did you mean '{suggestion}'"):
        load_config(write(tmp_path / "typo.toml", f"[{section}]\n{key} = 1\n"))


def test_key_in_wrong_section_is_unknown(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.latent_dim'"):
        load_config(write(tmp_path / "c.toml", "[train]\nlatent_dim = 10\n"))


def test_unknown_section_suggests_nearest(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path / "c.toml", "[modle]\nlatent_dim = 10\n"))
    message = first_line(err)
    assert "section 'modle'" in message and "did you mean 'model'" in message


def test_unknown_top_level_key_and_non_table_section(tmp_path):
    with pytest.raises(ConfigError, match="section 'epochs'"):
        load_config(write(tmp_path / "a.toml", "epochs = 3\n"))
    with pytest.raises(ConfigError, match=r"\[model\] must be a table"):
        RunConfig.from_dict({"model": 3})
    with pytest.raises(ConfigError, match="table of sections"):
        RunConfig.from_dict([("model", {})])


def test_unknown_key_without_near_match_gives_no_guess():
    with pytest.raises(ConfigError) as err:
        apply_overrides(RunConfig(), ["zzzzzz=1"])
    message = str(err.value)
    assert "did you mean" not in message and "valid: model.latent_dim" in message


# ---- --set overrides -----------------------------------------------------------------------


def test_override_bare_key():
    base = RunConfig()
    config = apply_overrides(base, ["latent_dim=2"])
    assert config.model.latent_dim == 2
    assert dataclasses.replace(config, model=base.model) == base  # nothing else changed
    assert base.model.latent_dim == 50  # the input is not mutated


def test_override_qualified_key_and_spaces():
    assert apply_overrides(RunConfig(), ["model.elbo=trace"]).model.elbo == "trace"
    assert apply_overrides(RunConfig(), [" model.elbo = jit-trace "]).model.elbo == "jit-trace"
    assert apply_overrides(RunConfig(), ['elbo="tracegraph"']).model.elbo == "tracegraph"


@pytest.mark.parametrize("text,expected", [
    ("hidden=[32,16]", (32, 16)), ("hidden=[32, 16, 8]", (32, 16, 8)), ("hidden=64", (64,)),
    ("model.hidden=[]", ()),
])
def test_override_lists(text, expected):
    assert apply_overrides(RunConfig(), [text]).model.hidden == expected


def test_override_booleans_numbers_and_later_wins():
    config = apply_overrides(RunConfig(), ["progress=false", "lr=3e-3", "beta=0.5", "epochs=2",
                                           "epochs=3", "train.seed=4", "data.seed=9"])
    assert config.train.progress is False
    assert config.train.lr == pytest.approx(3e-3) and config.model.kl.beta == 0.5
    assert config.train.epochs == 3
    assert (config.train.seed, config.data.seed) == (4, 9)
    assert apply_overrides(config, ["progress=true"]).train.progress is True


def test_override_string_that_looks_like_a_number_stays_a_string():
    config = apply_overrides(RunConfig(), ["data.path=2024", "data.name=inf"])
    assert config.data.path == "2024" and config.data.name == "inf"
    config = apply_overrides(RunConfig(), ["data.name=/tmp/some dir/x.npy"])
    assert config.data.name == "/tmp/some dir/x.npy"


def test_override_ambiguous_bare_key_names_both():
    with pytest.raises(ConfigError) as err:
        apply_overrides(RunConfig(), ["seed=1"])
    message = first_line(err)
    assert "ambiguous" in message and "data.seed" in message and "train.seed" in message


def test_override_without_equals():
    with pytest.raises(ConfigError) as err:
        apply_overrides(RunConfig(), ["latent_dim"])
    assert "key=value" in first_line(err) and "'latent_dim'" in str(err.value)


@pytest.mark.parametrize("text,suggestion", [
    ("latnet_dim=3", "model.latent_dim"), ("epoch=2", "train.epochs"),
    ("elbow=trace", "model.elbo"), ("model.laten_dim=3", "model.latent_dim"),
    ("train.epoch=2", "train.epochs"),
])
def test_override_unknown_key_suggests(text, suggestion):
    with pytest.raises(ConfigError) as err:
        apply_overrides(RunConfig(), [text])
    message = first_line(err)
    assert f"unknown config key '{text.split('=')[0]}'" in message
    assert f"did you mean '{suggestion}'" in message


def test_override_unknown_near_ambiguous_key_suggests_both():
    with pytest.raises(ConfigError, match="did you mean 'data.seed' or 'train.seed'"):
        apply_overrides(RunConfig(), ["sed=1"])


@pytest.mark.parametrize("text,key,word", [
    ("latent_dim=0", "model.latent_dim", ">= 1"), ("latent_dim=ten", "model.latent_dim", "integer"),
    ("progress=yes", "train.progress", "true or false"), ("elbo=foo", "model.elbo", "meanfield"),
    ("hidden=[32,16", "model.hidden", "list"), ("lr=nan", "train.lr", "finite"),
    ("device=tpu", "train.device", "cuda"),
])
def test_override_bad_values(text, key, word):
    with pytest.raises(ConfigError) as err:
        apply_overrides(RunConfig(), [text])
    message = first_line(err)
    assert key in message and word in message


def test_parse_value():
    assert parse_value("3") == 3 and parse_value("2.5") == 2.5 and parse_value("true") is True
    assert parse_value("[1, 2]") == [1, 2] and parse_value('"x y"') == "x y"
    assert parse_value("trace") == "trace" and parse_value("a/b.npy") == "a/b.npy"


def test_load_config_applies_overrides_after_file(tmp_path):
    path = write(tmp_path / "c.toml", "[model]\nlatent_dim = 4\n[train]\nepochs = 7\n")
    config = load_config(path, ["epochs=2", "hidden=[8, 4]"])
    assert (config.model.latent_dim, config.train.epochs, config.model.hidden) == (4, 2, (8, 4))


# ---- files ---------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "nope.toml")
    assert "nope.toml" in first_line(err) and "does not exist" in str(err.value)


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)


@pytest.mark.parametrize("text", ["[model\nlatent_dim = 3\n", "[model]\nlatent_dim = \n",
                                  "[model]\nlatent_dim = 3\nlatent_dim = 4\n",
                                  "[model]\nelbo = trace\n"])
def test_invalid_toml(tmp_path, text):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path / "bad.toml", text))
    message = first_line(err)
    assert "bad.toml" in message and "not valid TOML" in message and "line" in message


def test_non_utf8_file_is_invalid_toml(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes("# caf\xe9\n[model]\nlatent_dim = 3\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_utf8_file_is_read_as_utf8(tmp_path):
    path = tmp_path / "utf8.toml"
    path.write_bytes('# café\n[data]\nname = "données.npy"\n'.encode("utf-8"))
    assert load_config(path).data.name == "données.npy"


def test_renamed_keys_of_earlier_versions_still_load():
    """A run folder saved when ``data.image_channels`` was called ``data.channels`` loads."""
    old = RunConfig().to_dict()
    old["data"]["channels"] = old["data"].pop("image_channels")
    assert RunConfig.from_dict(old) == RunConfig()
    old["data"]["channels"] = 3
    assert RunConfig.from_dict(old).data.image_channels == 3
    both = RunConfig().to_dict()
    both["data"]["channels"] = 3  # the new name wins where both are given
    assert RunConfig.from_dict(both).data.image_channels == 0
