"""The conditional VAE (kind "cvae", pyrovae/conditional): known answers, the data it reads,
the commands that work on it, bit-exact resume and one-line refusals. All on the 8x8 digits
(quadrants of 4 x 4 pixels), seconds each."""

from __future__ import annotations

import json
import math
import signal

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import pyro
import pyro.distributions as dist

from pyrovae import CVAE, CVAEConfig, VAE, VAEConfig, load, load_dataset, train
from pyrovae.cli import main
from pyrovae.kinds.cvae import (BaselineNet, CVAETrainer, baseline_nll, train_baseline,
                                 visible_mask, with_labels)
from pyrovae.config import DataConfig, RunConfig, TrainConfig, load_config, to_toml
from pyrovae.data.fingerprint import data_fingerprint
from pyrovae.runtime.errors import ConfigError, DataError
from pyrovae.evaluation import evaluate_elbo
from pyrovae.evaluation.likelihood import log_weights
from pyrovae.runtime.traces import point_traces
from pyrovae.runtime.interface import capabilities, data_view
from pyrovae.runtime.rng import seeded
from pyrovae.runs import load_checkpoint
from pyrovae.training.guards import TrainingInterrupted

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = "configs/cvae-digits.toml"
SMALL = ["--set", "epochs=2", "--set", "progress=false", "--set", "hidden=[32]",
         "--set", "latent_dim=4"]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", binarize="dynamic")


def small(**kw) -> CVAEConfig:
    return CVAEConfig(**{"latent_dim": 3, "hidden": (16, 16), **kw})


def linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


# ---- which pixels are conditioned on ---------------------------------------------------------


def test_quadrants_follow_pyros_examples_cvae():
    """Pyro's MaskImages: 1 = bottom-left visible, 2 = the left half, 3 = all but the
    bottom-right quadrant; every channel alike."""
    grid = lambda v: visible_mask((1, 8, 8), v).reshape(8, 8)  # noqa: E731
    one, two, three = grid(1), grid(2), grid(3)
    assert one.sum() == 16 and one[4:, :4].all()
    assert two.sum() == 32 and two[:, :4].all()
    assert three.sum() == 48 and not three[4:, 4:].any()
    assert torch.equal(visible_mask((3, 8, 8), 2).reshape(3, 8, 8), two.expand(3, 8, 8))
    odd = visible_mask((1, 5, 7), 1).reshape(5, 7)  # H // 2, W // 2 split, as Pyro's
    assert odd[2:, :3].all() and odd.sum() == 9


def test_label_view_appends_one_hot_classes_to_the_same_draws(digits):
    view = with_labels(digits, 10)
    x, plain = view.train_data(3, 7), digits.train_data(3, 7)
    assert x.shape == (digits.num_train, 74)
    assert torch.equal(x[:, :64], plain)  # the same binarization draw
    assert torch.equal(x[:, 64:].argmax(1), digits.train_y) and torch.equal(x[:, 64:].sum(1),
                                                                            torch.ones(len(x)))
    assert torch.equal(view.test_data()[:, :64], digits.test_data())
    assert data_fingerprint(view) == data_fingerprint(digits) and view.shape == digits.shape
    assert with_labels(view, 10) is view and view.to("cpu").test_data().shape[1] == 74
    m = CVAE(small(condition="label"), digits.shape)
    assert data_view(m, digits).test_data().shape == (len(digits.test_x), 74)
    assert data_view(CVAE(small(), digits.shape), digits) is digits


# ---- known answers ------------------------------------------------------------------------


def matching_vae(cvae: CVAE) -> VAE:
    """A plain pyrovae VAE of x_out (learned normal prior) whose networks are the CVAE's with
    x_in = 0: the recognition network's x_out columns, the generation network's z layer (its
    x_in layer adds nothing at 0) and the prior network's constant output."""
    c = cvae.config
    vae = VAE(VAEConfig(latent_dim=c.latent_dim, hidden=c.hidden, activation=c.activation,
                        likelihood="bernoulli", prior="learnable-normal"), (cvae.out_dim,))
    dtype = next(cvae.parameters()).dtype
    vae = vae.to(dtype)
    enc_c, enc_v = linears(cvae.encoder), linears(vae.encoder)
    dec_c, dec_v = [cvae.decoder.first, *linears(cvae.decoder.rest)], linears(vae.decoder)
    assert len(enc_c) == len(enc_v) and len(dec_c) == len(dec_v)
    with torch.no_grad():
        enc_v[0].weight.copy_(enc_c[0].weight[:, cvae.in_dim:])  # cat([x_in, x_out]): x_out's
        enc_v[0].bias.copy_(enc_c[0].bias)
        for a, b in [*zip(enc_c[1:], enc_v[1:]), *zip(dec_c, dec_v)]:
            b.weight.copy_(a.weight)
            b.bias.copy_(a.bias)
        p = cvae.prior(torch.zeros(1, cvae.in_dim, dtype=dtype)).base_dist
        vae.prior.loc.copy_(p.loc[0])
        vae.prior.raw_scale.copy_(torch.log(torch.expm1(p.scale[0])))
    return vae


def randomized(cvae: CVAE, seed: int = 3) -> CVAE:
    """Every parameter redrawn (larger than at initialisation), so no term is near zero."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in cvae.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen))
    return cvae


class LeakyPrior(CVAE):
    """A broken CVAE whose prior network sees the hidden pixels (their mean)."""

    def model(self, x, n_data=None):
        x_in, x_out = self.split(x)
        with self._plate(x, n_data):
            z = pyro.sample("z", self.prior(x_in + x_out.mean(-1, keepdim=True)))
            pyro.sample("x_out", self.likelihood(self.decoder(z, x_in)), obs=x_out)


class ObservesVisible(CVAE):
    """A broken CVAE that also scores the visible pixels (here under Bernoulli(1/2))."""

    def model(self, x, n_data=None):
        x_in, x_out = self.split(x)
        with self._plate(x, n_data):
            z = pyro.sample("z", self.prior(x_in))
            pyro.sample("x_out", self.likelihood(self.decoder(z, x_in)), obs=x_out)
            pyro.sample("x_in", dist.Bernoulli(logits=torch.zeros_like(x_in)).to_event(1),
                        obs=x_in)


def reduction_gap(cls, digits, visible: int) -> float:
    """max |log w_CVAE - log w_VAE| over 20 draws of 64 test images whose visible quadrants
    are blanked, the same seed for both models."""
    pyro.set_rng_seed(0)
    cvae = randomized(cls(small(visible=visible), digits.shape)).double()  # no rounding noise
    vae = matching_vae(cvae)
    x = digits.test_data()[:64].double()
    x[:, cvae.in_index] = 0.0  # blank the condition
    with seeded(1):
        lw_c = log_weights(cvae, x, 20)
    with seeded(1):
        lw_v = log_weights(vae, x[:, cvae.out_index], 20)
    return float((lw_c - lw_v).abs().max())


@pytest.mark.parametrize("visible", [1, 2, 3])
def test_blanked_condition_reduces_to_a_vae_of_the_hidden_pixels(digits, visible):
    """x_in = 0: the CVAE's importance weights p(x_out, z | x_in) / q(z | x_in, x_out) and its
    ELBO (closed-form KL) are those of a plain VAE of x_out built from the same weights."""
    assert reduction_gap(CVAE, digits, visible) < 1e-9
    pyro.set_rng_seed(0)
    cvae = randomized(CVAE(small(visible=visible), digits.shape)).double()
    vae = matching_vae(cvae)
    x = digits.test_data().double()
    x[:, cvae.in_index] = 0.0
    a, b = evaluate_elbo(cvae, x, seed=4), evaluate_elbo(vae, x[:, cvae.out_index], seed=4)
    assert a["kl_estimator"] == b["kl_estimator"] == "analytic"
    for key in ("elbo", "log_px_z", "kl"):
        assert a[key] == pytest.approx(b[key], abs=1e-9), key
    assert a["kl"] > 0.1 and a["log_px_z"] < -10  # not a degenerate comparison


@pytest.mark.parametrize("broken", [LeakyPrior, ObservesVisible])
def test_the_reduction_test_catches_a_leak_and_an_observed_condition(digits, broken):
    assert reduction_gap(broken, digits, 2) > 0.1


def test_only_x_out_is_observed_and_x_out_reaches_only_the_guide(digits):
    """With z fixed, log p(x_out | x_in, z) is the Bernoulli sum over the hidden pixels by
    hand; changing the hidden pixels changes neither p(z | x_in) nor the generation network's
    output, while changing the visible ones changes both."""
    pyro.set_rng_seed(0)
    m = randomized(CVAE(small(visible=1), digits.shape)).eval()
    x = digits.test_data()[:32]
    t = point_traces(m, x)
    assert t.observed == ["x_out"] and t.sampled == ["z"]
    assert torch.equal(t.model.nodes["x_out"]["value"], x[:, m.out_index])
    z = t.guide.nodes["z"]["value"]
    logits = m.decoder(z, x[:, m.in_index])
    hidden = x[:, m.out_index]
    by_hand = (hidden * logits - F.softplus(logits)).sum(-1)
    torch.testing.assert_close(t.lp_model["x_out"], by_hand)
    assert logits.shape[-1] == 48  # the three hidden quadrants of 16 pixels

    flipped_hidden, flipped_visible = x.clone(), x.clone()
    flipped_hidden[:, m.out_index] = 1 - flipped_hidden[:, m.out_index]
    flipped_visible[:, m.in_index] = 1 - flipped_visible[:, m.in_index]
    with torch.no_grad():
        def prior_and_output(rows):
            x_in, _ = m.split(rows)
            p = m.prior(x_in).base_dist
            return p.loc, p.scale, m.decoder(z, x_in)
        same, moved = prior_and_output(flipped_hidden), prior_and_output(flipped_visible)
        for a, b, c in zip(prior_and_output(x), same, moved):
            assert torch.equal(a, b) and not torch.allclose(a, c)
        q0, q1 = m.encode(x), m.encode(flipped_hidden)  # q(z | x_in, x_out) does read x_out
        assert not torch.allclose(q0[0], q1[0])


def test_label_condition_observes_the_image_given_its_class(digits):
    pyro.set_rng_seed(0)
    m = randomized(CVAE(small(condition="label"), digits.shape)).eval()
    x = with_labels(digits, 10).test_data()[:16]
    t = point_traces(m, x)
    assert torch.equal(t.model.nodes["x_out"]["value"], x[:, :64])
    other = x.clone()
    other[:, 64:] = torch.roll(other[:, 64:], 1, dims=1)  # every class moved by one
    with seeded(0):
        a = log_weights(m, x, 10)
    with seeded(0):
        b = log_weights(m, other, 10)
    assert not torch.allclose(a, b)  # the class conditions the likelihood


def test_baseline_nll_is_the_summed_cross_entropy_of_the_hidden_pixels(digits):
    torch.manual_seed(0)
    net = BaselineNet(digits.shape, 3, hidden=(8,))
    x = digits.test_data()[:20]
    p = net.predict(x[:, net.in_index])
    hidden = x[:, net.out_index]
    by_hand = -(hidden * p.log() + (1 - hidden) * (1 - p).log()).sum(-1)
    torch.testing.assert_close(baseline_nll(net, x).float(), by_hand, rtol=1e-4, atol=1e-4)
    assert hidden.shape[1] == 16
    run = train_baseline(digits, 2, epochs=3, batch_size=64, lr=3e-3, hidden=(32,))
    nll = [r["test_nll"] for r in run.history]
    assert nll[-1] < nll[0] < 32 * math.log(2) + 5 and len(run.history) == 3


# ---- training, evaluation and the commands ------------------------------------------------


@pytest.fixture(scope="module")
def quadrant_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cvae") / "quadrants"
    assert main(["train", CONFIG, *SMALL, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def label_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cvae") / "label"
    assert main(["train", CONFIG, *SMALL, "--set", "condition=label", "--out", str(out)]) == 0
    return out


def test_cli_trains_both_conditions_and_evaluates_a_finite_conditional_nll(
        quadrant_run, label_run, capsys):
    for run_dir, picture, d_in, d_out in ((quadrant_run, "predictions.png", 32, 32),
                                          (label_run, "by_class.png", 10, 64)):
        run = load(run_dir)
        assert isinstance(run.vae, CVAE) and run.config.model.kind == "cvae"
        m = json.loads((run_dir / "metrics.json").read_text())
        assert (m["input_dim"], m["output_dim"]) == (d_in, d_out) and m["test_elbo"] < 0
        assert (run_dir / picture).is_file() and (run_dir / "elbo.png").is_file()
        assert main(["evaluate", str(run_dir), "--nll-samples", "100", "--quiet"]) == 0
        ev = json.loads((run_dir / "eval.json").read_text())
        assert math.isfinite(ev["test_nll"]) and 0 < ev["test_nll"] < 32 * math.log(2) * 3
        # log p(x_out | x_in) >= the ELBO in expectation; the NLL is below -ELBO
        assert ev["test_nll"] <= -ev["test_elbo"] + 3 * ev["test_elbo_se"]
        assert 0 <= ev["khat_share_above_0_7"] <= 1 and ev["psis_khat"]["max"] == ev[
            "psis_khat"]["max"]
        assert ev["test_elbo"] == pytest.approx(m["test_elbo"])  # the same conditional bound
    capsys.readouterr()


def test_sample_given_a_class_and_given_visible_quadrants(quadrant_run, label_run, tmp_path,
                                                          digits, capsys):
    assert main(["sample", str(label_run), "--condition", "3", "--n", "12",
                 "--out", str(tmp_path / "c3"), "--save-npy"]) == 0
    result = json.loads((tmp_path / "c3" / "sample.json").read_text())
    assert result["condition"] == "3" and result["n"] == 12
    draws = np.load(tmp_path / "c3" / "sample.npy")
    assert draws.shape == (12, 1, 8, 8) and draws.std(0).mean() > 0  # several styles
    m = load(label_run).vae
    torch.testing.assert_close(torch.from_numpy(draws).reshape(12, 64),
                               m.sample(12, seed=0, condition=3))
    assert not torch.allclose(m.sample(12, seed=0, condition=3), m.sample(12, seed=0,
                                                                          condition=5))

    assert main(["sample", str(quadrant_run), "--condition", "5", "--n", "6", "--save-npy",
                 "--out", str(tmp_path / "q5")]) == 0
    q = torch.from_numpy(np.load(tmp_path / "q5" / "sample.npy")).reshape(6, 64)
    m = load(quadrant_run).vae
    x = digits.test_data()[5]
    assert torch.equal(q[:, m.in_index], x[m.in_index].expand(6, -1))  # the visible half kept
    assert ((q[:, m.out_index] > 0) & (q[:, m.out_index] < 1)).all()  # completed with E[x_out]
    capsys.readouterr()


@pytest.mark.parametrize("args, message", [
    (["--condition", "12"], "a label-conditioned CVAE takes a class 0..9"),
    (["--condition", "three"], "takes a class 0..9"),
    (["--condition", "3", "--mode", "sample"], "samples decoder means only"),
])
def test_bad_conditions_are_refused_in_one_line(label_run, args, message, tmp_path, capsys):
    assert main(["sample", str(label_run), *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_a_condition_on_a_model_without_the_capability_is_refused(digits, quadrant_run,
                                                                  tmp_path, capsys):
    plain = train(VAEConfig(latent_dim=2, hidden=(16,)), digits, epochs=1, progress=False,
                  out=tmp_path / "vae")
    assert main(["sample", str(plain.path), "--condition", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "pyrovae: error: sample --condition needs a decoder conditioned on more than z")
    assert main(["sample", str(quadrant_run), "--condition", "999"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "index 0..296" in err[0]
    assert main(["sample", str(quadrant_run)]) == 2  # no unconditional p(x) to draw from
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--condition INDEX" in err[0]


def test_generic_commands_on_a_cvae_run(label_run, tmp_path, capsys):
    """export, latent-map (the encoder q(z | x_in, x_out)); the commands needing an
    unconditional decoder, and the likelihood ratio against a model of the whole x, refuse
    in one line."""
    assert main(["export", str(label_run), "--arviz", str(tmp_path / "post.nc"),
                 "--draws", "30"]) == 0
    assert (tmp_path / "post.nc").is_file()
    assert main(["latent-map", str(label_run), "--out", str(tmp_path)]) == 0
    assert capabilities(load(label_run).vae) == {"encoder", "sample", "condition"}
    capsys.readouterr()
    for command in ("reconstruct", "interpolate", "impute"):
        assert main([command, str(label_run), "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "CVAE does not declare" in err[0], command
    assert main(["anomaly", str(label_run), "--score", "ratio", "--labels-anomalous", "9",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "conditional model of part of x" in err[0]


def test_compare_varies_the_conditioning(tmp_path, capsys, monkeypatch):
    from pathlib import Path
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    assert main(["compare", CONFIG, "--set", "epochs=1", "--set", "progress=false",
                 "--set", "hidden=[16]", "--set", "latent_dim=2", "--set", "data.train_size=300",
                 "--vary", "condition=quadrants,label", "--nll-samples", "25",
                 "--grad-draws", "5", "--out", str(tmp_path / "cmp")]) == 0
    rows = (tmp_path / "cmp" / "compare.csv").read_text().splitlines()
    assert len(rows) == 3 and "label" in rows[2]
    capsys.readouterr()


@pytest.mark.parametrize("model", [
    {"elbo": "iwae", "num_particles": 3},
    {"elbo": "meanfield", "num_particles": 2, "condition": "label"},
    {"elbo": "trace", "num_particles": 3, "objective": {"bound": "iwae", "gradient": "dreg"}},
])
def test_other_objectives_train(digits, model):
    """The particles' z [K, B, L] broadcast against x_in [B, D_in] in every network."""
    run = train(small(**model), digits, epochs=1, batch_size=100, progress=False)
    assert math.isfinite(run.metrics["test_elbo"]) and run.metrics["test_elbo"] < 0


@pytest.mark.parametrize("condition", ["quadrants", "label"])
def test_stopped_run_resumes_bit_for_bit(digits, tmp_path, monkeypatch, condition):
    config = RunConfig(model=small(condition=condition, elbo="trace"),
                       data=DataConfig(name="digits", binarize="dynamic"),
                       train=TrainConfig(epochs=2, batch_size=100, lr=3e-3, progress=False,
                                         lr_schedule="cosine"))
    whole = train(config, digits, out=tmp_path / "whole")
    step = CVAETrainer.train_step

    def stop_at_17(self, xb):
        if self.step == 17:  # epoch 2 of 15 steps each: mid-epoch
            signal.raise_signal(signal.SIGTERM)
        return step(self, xb)

    monkeypatch.setattr(CVAETrainer, "train_step", stop_at_17)
    with pytest.raises(TrainingInterrupted):
        train(config, digits, out=tmp_path / "cut")
    monkeypatch.setattr(CVAETrainer, "train_step", step)
    assert load_checkpoint(tmp_path / "cut")["step"] == 18
    resumed = train(config, digits, out=tmp_path / "cut", resume=True)
    a, b = load_checkpoint(tmp_path / "whole")["model"], load_checkpoint(tmp_path / "cut")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.metrics["test_elbo"] == whole.metrics["test_elbo"]


# ---- configs and refusals -------------------------------------------------------------------


def test_config_file_round_trips_and_set_reaches_the_cvae_keys(tmp_path):
    config = load_config(CONFIG, ["visible=3", "condition=label", "num_classes=12"])
    assert isinstance(config.model, CVAEConfig)
    assert (config.model.visible, config.model.condition, config.model.num_classes) == (3,
                                                                                          "label",
                                                                                          12)
    path = tmp_path / "c.toml"
    path.write_text(to_toml(config))
    assert load_config(path) == config
    switched = load_config("configs/digits.toml", ["kind=cvae"])  # a VAE file made a CVAE
    assert isinstance(switched.model, CVAEConfig) and switched.model.hidden == (128,)


@pytest.mark.parametrize("edit, message", [
    ("visible=4", "model.visible = 4 is out of range: it must be <= 3"),
    ("visible=0", "model.visible = 0 is out of range: it must be >= 1"),
    ("condition=pixels", "model.condition = 'pixels' is not one of: quadrants, label"),
    ("elbo=jit-trace", "model.elbo = 'jit-trace' is not one of"),
    ("elbo=enum", "model.elbo = 'enum' is not one of"),
    ("num_classes=1", "model.num_classes = 1 is out of range"),
])
def test_bad_configs_are_refused_in_one_line(edit, message, tmp_path, capsys):
    assert main(["train", CONFIG, "--set", edit, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("case, message", [
    ("label-without-labels", "model.condition = \"label\" needs the class of every example"),
    ("quadrants-of-vectors", "needs images shaped (channels, height, width)"),
    ("too-few-classes", "labels of 'digits' span 0..9 but model.num_classes = 5"),
])
def test_data_the_condition_cannot_use_are_refused_in_one_line(case, message, tmp_path,
                                                               capsys):
    rng = np.random.default_rng(0)
    edits = ["--set", "epochs=1", "--set", "progress=false"]
    if case == "label-without-labels":
        path = tmp_path / "images.npy"  # 8x8 images in [0, 1], no labels
        np.save(path, rng.random((60, 8, 8)).astype(np.float32))
        edits += ["--set", f"data.name=\"{path}\"", "--set", "condition=label",
                  "--set", "batch_size=16"]
    elif case == "quadrants-of-vectors":
        path = tmp_path / "vectors.npy"
        np.save(path, rng.random((60, 64)).astype(np.float32))
        edits += ["--set", f"data.name=\"{path}\"", "--set", "batch_size=16"]
    else:
        edits += ["--set", "condition=label", "--set", "num_classes=5"]
    assert main(["train", CONFIG, *edits, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "r").exists()


def test_api_refusals(digits):
    with pytest.raises(ConfigError, match="CVAE needs a CVAEConfig"):
        CVAE(VAEConfig(), digits.shape)
    with pytest.raises(ConfigError, match="CVAEConfig is kind = \"cvae\""):
        CVAEConfig(kind="vae")
    with pytest.raises(DataError, match="have no labels"):
        unlabelled = digits.to("cpu")
        unlabelled.test_y = None
        train(small(condition="label"), unlabelled, epochs=1, progress=False)
    m = CVAE(small(), digits.shape)
    with pytest.raises(ConfigError, match="takes rows of 64 values"):
        m.model(torch.zeros(2, 74))
    with pytest.raises(ConfigError, match="samples completions of given visible quadrants"):
        m.sample(4)
