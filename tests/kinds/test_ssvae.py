"""The semi-supervised VAE (M2): exact enumeration, the label split, the objective's pieces,
training/resume/load through the shared trainer, the by-class grid, config and CLI."""

import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import pyro
import pytest
import torch
from pyro import poutine
from torch.nn import functional as F

from pyrovae import SSVAE, SSVAEConfig, load, load_dataset, train
from pyrovae.config import KLConfig, RunConfig, load_config, to_toml
from pyrovae.runtime.errors import ConfigError, DataError
from pyrovae.components.nets.mlp import gaussian_head
from pyrovae.kinds.ssvae import (evaluate_ssvae, make_ss_elbo, sample_by_class, split_labels,
                                    ss_loss)
from pyrovae.evaluation import elbo_terms
from pyrovae.kinds.ssvae.trainer import SSVAETrainer
from pyrovae.runs import load_checkpoint
from pyrovae.training.guards import TrainingInterrupted

ROOT = Path(__file__).resolve().parents[2]
C, D, N = 3, 12, 40


def tiny(**kw) -> SSVAE:
    cfg = SSVAEConfig(**{"latent_dim": 2, "hidden": (5,), "classifier": (4,), "num_classes": C,
                         "labels": C, **kw})
    torch.manual_seed(0)
    return SSVAE(cfg, (D,))


@pytest.fixture(scope="module")
def xs():
    gen = torch.Generator().manual_seed(0)
    return torch.bernoulli(torch.rand(6, D, generator=gen), generator=gen)


def hand_unlabelled_elbo(m: SSVAE, x, z, beta=1.0):
    """sum_b sum_c q(c|x_b) [log p(x_b|c,z_bc) + beta (log p(z_bc) - log q(z_bc|x_b,c))
    + log p(c) - log q(c|x_b)], computed class by class with plain torch; z [C, B, L]."""
    log_q = torch.log_softmax(m.classifier(x), -1)  # [B, C]
    total = 0.0
    for c in range(C):
        y = torch.full((x.shape[0],), c)
        loc, scale = gaussian_head(m.encoder(x, y))
        eps = ((z[c] - loc) / scale).detach()  # the recorded draw, reparameterised
        zc = loc + scale * eps
        log_px = torch.distributions.Bernoulli(logits=m.decoder(zc, y)).log_prob(x).sum(-1)
        log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(zc).sum(-1)
        log_qz = torch.distributions.Normal(loc, scale).log_prob(zc).sum(-1)
        term = log_px + beta * (log_pz - log_qz) + math.log(1 / C) - log_q[:, c]
        total = total + (log_q[:, c].exp() * term).sum()
    return total


@pytest.mark.parametrize("beta", [1.0, 2.5])
def test_parallel_enumeration_equals_the_explicit_sum_over_classes(xs, beta):
    m = tiny(kl=KLConfig(beta=beta))  # beta weighs z's KL (1 = the M2 bound)
    elbo = make_ss_elbo("enum")
    pyro.set_rng_seed(3)
    loss = elbo.differentiable_loss(m.model, m.guide, xs, n_data=N)
    grads = torch.autograd.grad(loss, list(m.parameters()), allow_unused=True)
    pyro.set_rng_seed(3)  # the same draws of z, recorded from the enumerated guide
    trace = poutine.trace(poutine.enum(m.guide, first_available_dim=-2)).get_trace(xs, n_data=N)
    z = trace.nodes["z"]["value"].detach()
    assert trace.nodes["y"]["value"].shape == (C, 1) and z.shape == (C, xs.shape[0], 2)
    expected = -hand_unlabelled_elbo(m, xs, z, beta) * N / xs.shape[0]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    hand_grads = torch.autograd.grad(expected, list(m.parameters()), allow_unused=True)
    for name, (g, h) in zip(dict(m.named_parameters()), zip(grads, hand_grads)):
        if h is None:
            assert g is None or not g.abs().any(), name
        else:
            torch.testing.assert_close(g, h, rtol=1e-4, atol=1e-5, msg=name)
    assert grads[0] is not None and grads[0].abs().sum() > 0  # the classifier learns from U(x)


def test_common_noise_shares_z_noise_across_classes_only_under_parallel_enumeration(xs):
    traces = {}
    for common in (True, False):
        m = tiny(common_noise=common)
        tr = poutine.trace(poutine.enum(m.guide, first_available_dim=-2)).get_trace(xs)
        loc, scale = gaussian_head(m.encoder(xs, tr.nodes["y"]["value"]))
        traces[common] = ((tr.nodes["z"]["value"] - loc) / scale).detach()  # eps [C, B, L]
    shared, independent = traces[True], traces[False]
    assert shared.shape == independent.shape == (C, xs.shape[0], 2)
    torch.testing.assert_close(shared, shared[:1].expand_as(shared))
    assert not torch.allclose(independent[0], independent[1])


def test_every_estimator_of_the_unlabelled_bound_has_the_same_mean(xs):
    """Parallel (common or independent z noise) and sequential enumeration, sampled y
    (Trace_ELBO) and the evaluation's analytic-KL form all estimate the same U(x)."""
    means = {}
    for name, kw in [("parallel", {}), ("sequential", {"enumerate": "sequential"}),
                     ("trace", {"elbo": "trace"}), ("independent", {"common_noise": False})]:
        m = tiny(**kw)
        elbo = make_ss_elbo(m.config.elbo)
        pyro.set_rng_seed(0)
        with torch.no_grad():
            vals = torch.tensor([-elbo.loss(m.model, m.guide, xs) for _ in range(200)])
        means[name] = (vals.mean(), vals.std() / math.sqrt(len(vals)))
    m = tiny()
    pyro.set_rng_seed(0)
    vals = torch.stack([elbo_terms(m, xs).elbo.sum() for _ in range(200)])
    means["analytic"] = (vals.mean(), vals.std() / math.sqrt(len(vals)))
    ref, ref_se = means["parallel"]
    for name, (mean, se) in means.items():
        assert abs(mean - ref) < 5 * math.hypot(se, ref_se) + 1e-4, (name, means)
    assert means["sequential"][1] > 0  # z is random: a test that can tell estimators apart


def test_aux_loss_is_alpha_weighted_cross_entropy_scaled_to_the_labelled_set(xs):
    m = tiny()
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    ce = F.cross_entropy(m.classifier(xs), y, reduction="sum")
    assert m.aux_loss(xs, y, n_data=30).item() == pytest.approx(ce.item() * 30 / 6, rel=1e-6)
    elbo = make_ss_elbo("enum")
    losses = {}
    for alpha in (0.0, 2.5):
        pyro.set_rng_seed(1)
        losses[alpha], unl = ss_loss(elbo, m, xs, xs, y, 100, 30, alpha)
    assert (losses[2.5] - losses[0.0]).item() == pytest.approx(2.5 * ce.item() * 5, rel=1e-5)
    pyro.set_rng_seed(1)
    alone = elbo.differentiable_loss(m.model, m.guide, xs, n_data=100)
    assert unl.item() == pytest.approx(alone.item(), rel=1e-6)


def test_labelled_data_observe_y_and_enumerate_nothing(xs):
    m = tiny()
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    guide = poutine.trace(m.guide).get_trace(xs, y)
    assert "y" not in guide.nodes
    model = poutine.trace(poutine.replay(m.model, trace=guide)).get_trace(xs, y)
    assert model.nodes["y"]["is_observed"] and torch.equal(model.nodes["y"]["value"], y)


# ---- the label split ---------------------------------------------------------------------


def test_split_is_balanced_disjoint_complete_and_seeded():
    y = torch.arange(1000) % 10
    s = split_labels(y, labels=103, validation=200, num_classes=10, seed=4)
    counts = torch.bincount(y[s.labelled], minlength=10)
    assert counts.tolist() == [11, 11, 11] + [10] * 7
    every = torch.cat([s.labelled, s.unlabelled, s.validation])
    assert every.sort().values.tolist() == list(range(1000))
    assert s.validation.numel() == 200 and s.unlabelled.numel() == 697
    again = split_labels(y, 103, 200, 10, seed=4)
    assert torch.equal(again.labelled, s.labelled) and torch.equal(again.validation, s.validation)
    other = split_labels(y, 103, 200, 10, seed=5)
    assert not torch.equal(other.labelled, s.labelled)


@pytest.mark.parametrize("args, message", [
    ((None, 10, 0, 2), "needs the training labels"),
    ((torch.tensor([0] * 50 + [1] * 3), 10, 0, 2), "class 1 has only 3"),
    ((torch.arange(20) % 2, 10, 10, 2), "leave no unlabelled"),
    ((torch.arange(20) % 3, 4, 0, 2), "num_classes = 2"),
])
def test_split_errors_name_the_problem(args, message):
    with pytest.raises(DataError, match=message):
        split_labels(*args)


# ---- config ------------------------------------------------------------------------------


def test_config_round_trips_and_set_labels_resolves(tmp_path):
    config = RunConfig(model=SSVAEConfig(labels=300, alpha=0.0, elbo="trace", hidden=(64, 32)))
    path = tmp_path / "c.toml"
    path.write_text(to_toml(config))
    assert load_config(path) == config
    edited = load_config(path, ["labels=100", "enumerate=sequential", "alpha=46"])
    assert isinstance(edited.model, SSVAEConfig)
    assert (edited.model.labels, edited.model.enumerate, edited.model.alpha) == (100, "sequential", 46.0)
    with pytest.raises(ConfigError, match="did you mean 'model.labels'"):
        load_config(path, ["labelz=3"])
    shipped = load_config(ROOT / "configs/ssvae-mnist.toml", ["labels=3000"])
    assert shipped.model.kind == "ssvae" and shipped.model.labels == 3000


def test_kind_switches_the_model_section(tmp_path):
    path = tmp_path / "vae.toml"
    path.write_text(to_toml(RunConfig()))
    with pytest.raises(ConfigError, match="belongs to kind = \"ssvae\""):
        load_config(path, ["labels=100"])
    switched = load_config(path, ["kind=ssvae", "labels=100"])
    assert isinstance(switched.model, SSVAEConfig) and switched.model.elbo == "enum"
    assert switched.model.hidden == (500,)  # the new kind's defaults, not the old kind's


@pytest.mark.parametrize("kw, message", [
    ({"prior": "vamp", "elbo": "enum"}, "not supported by kind"),
    ({"elbo": "meanfield"}, "not one of: enum, trace"),
    ({"labels": 5}, "fewer than num_classes"),
    ({"enumerate": "both"}, "parallel, sequential"),
    ({"alpha": -1.0}, "must be >= 0"),
    ({"kl": KLConfig(beta=0.0)}, "needs a weight > 0"),
    ({"kl": KLConfig(schedule="linear", warmup=10)}, "not supported by kind"),
    ({"kind": "vae"}, "built by VAEConfig"),
])
def test_bad_ssvae_configs_fail_clearly(kw, message):
    with pytest.raises(ConfigError, match=message):
        SSVAEConfig(**kw)


# ---- training through the shared trainer -------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", binarize="dynamic")


def small(**kw) -> RunConfig:
    model = SSVAEConfig(**{"latent_dim": 4, "hidden": (32,), "classifier": (64,), "labels": 50,
                           "validation": 200, "alpha": 10.0, "label_batch_size": 20, **kw})
    from pyrovae.config import DataConfig, TrainConfig
    return RunConfig(model=model, data=DataConfig(name="digits", binarize="dynamic"),
                     train=TrainConfig(epochs=3, batch_size=100, lr=3e-3, progress=False))


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("ssvae") / "run"
    return train(small(), digits, out=out)


def test_training_learns_to_classify_and_writes_the_run(trained, digits):
    m = trained.metrics
    assert isinstance(trained.vae, SSVAE) and m["objective_run"] == "TraceEnum_ELBO"
    assert m["test_accuracy"] > 0.4  # chance is 0.1
    assert m["labels"] == 50 and m["num_validation"] == 200 and m["num_unlabelled"] == 1250
    assert m["steps"] == 3 * (1250 // 100) and math.isfinite(m["test_elbo"])
    best = max(trained.history, key=lambda r: r["val_accuracy"])
    assert m["test_accuracy_at_best_val"] == best["test_accuracy"]
    ev = evaluate_ssvae(trained.vae, digits.test_data(), digits.test_y, seed=0)
    assert ev["accuracy"] == pytest.approx(m["test_accuracy"])
    assert ev["elbo"] == pytest.approx(m["test_elbo"]) and ev["elbo"] < 0
    for name in ("by_class.png", "analogies.png", "samples.png", "metrics.json", "history.csv"):
        assert (trained.path / name).is_file(), name
    saved = json.loads((trained.path / "metrics.json").read_text())
    assert saved["test_accuracy"] == m["test_accuracy"]


def test_saved_run_loads_to_the_same_classifier(trained, digits):
    run = load(trained.path)
    assert isinstance(run.vae, SSVAE) and isinstance(run.config.model, SSVAEConfig)
    x = digits.test_data()
    assert torch.equal(run.vae.classify(x), trained.vae.classify(x))


def test_stopped_run_resumes_bit_for_bit(digits, tmp_path, monkeypatch):
    config = small(label_batch_size=15)  # 50 labels in rounds of 3 batches: crosses rounds
    config.train.epochs = 2  # 12 steps each: the stop at step 17 is mid-epoch
    config.train.lr_schedule = "cosine"  # the rate, a function of the step, resumes too
    whole = train(config, digits, out=tmp_path / "whole")
    step = SSVAETrainer.train_step

    def stop_at_17(self, xb):
        if self.step == 17:
            signal.raise_signal(signal.SIGTERM)
        return step(self, xb)

    monkeypatch.setattr(SSVAETrainer, "train_step", stop_at_17)
    with pytest.raises(TrainingInterrupted):
        train(config, digits, out=tmp_path / "cut")
    monkeypatch.setattr(SSVAETrainer, "train_step", step)
    assert load_checkpoint(tmp_path / "cut")["step"] == 18
    resumed = train(config, digits, out=tmp_path / "cut", resume=True)
    a, b = load_checkpoint(tmp_path / "whole")["model"], load_checkpoint(tmp_path / "cut")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.metrics["test_accuracy"] == whole.metrics["test_accuracy"]


def test_sampled_y_objective_trains(digits):
    run = train(small(elbo="trace"), digits, epochs=1)
    assert run.metrics["objective_run"] == "Trace_ELBO" and math.isfinite(run.metrics["test_elbo"])
    assert 0 <= run.metrics["test_accuracy"] <= 1


def test_data_without_labels_is_refused(digits):
    unlabelled = digits.to("cpu")
    unlabelled.train_y = None
    with pytest.raises(DataError, match="needs the training labels"):
        train(small(), unlabelled)


# ---- pictures ----------------------------------------------------------------------------


def test_by_class_grid_shares_the_style_along_each_column(trained):
    m = trained.vae
    grid = sample_by_class(m, n_columns=4, seed=7)
    assert grid.shape == (10 * 4, 64)
    torch.manual_seed(7)
    z = torch.randn(4, m.config.latent_dim)
    for c in (0, 3, 9):
        expected = m.decode(z, torch.full((4,), c))
        torch.testing.assert_close(grid[c * 4:(c + 1) * 4], expected)
    assert torch.equal(sample_by_class(m, 4, seed=7), grid)
    assert not torch.allclose(grid[0:4], grid[4:8])  # rows (classes) differ


def test_samples_and_reconstructions(trained, digits):
    m = trained.vae
    assert m.sample(5, seed=1).shape == (5, 64) and torch.equal(m.sample(5, seed=1),
                                                                m.sample(5, seed=1))
    x = digits.test_data()[:8]
    assert m.reconstruct(x).shape == (8, 64)
    assert torch.allclose(m.class_probs(x).sum(-1), torch.ones(8))


# ---- command line ------------------------------------------------------------------------


def pyrovae(*args):
    return subprocess.run([sys.executable, "-m", "pyrovae", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_cli_trains_with_set_labels_and_rejects_bad_values(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "run"
    done = pyrovae("train", "configs/ssvae-digits.toml", "--set", "labels=30", "--set",
                   "epochs=2", "--set", "progress=false", "--out", str(out))
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["labels"] == 30 and 0 <= metrics["test_accuracy"] <= 1
    from pyrovae.cli import main
    bad = main(["train", "configs/ssvae-digits.toml", "--set", "labels=5", "--out",
                str(tmp_path / "bad")])
    assert bad == 2 and "fewer than num_classes" in capsys.readouterr().err


def test_sample_by_class_command_and_its_errors(trained, tmp_path, digits, capsys):
    from pyrovae.cli import main
    assert main(["sample", str(trained.path), "--by-class", "4", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "by_class.json").read_text())
    assert (result["classes"], result["columns"]) == (10, 4)
    from PIL import Image
    width, height = Image.open(tmp_path / "by_class.png").size
    assert height > 2 * width  # 10 rows of 4 columns
    assert main(["sample", str(trained.path), "--out", str(tmp_path / "d")]) == 0  # the default
    assert (tmp_path / "d" / "by_class.png").is_file()
    assert main(["sample", str(trained.path), "--by-class", "0", "--out", str(tmp_path)]) == 2
    assert "must be >= 1" in capsys.readouterr().err
    from pyrovae import VAEConfig
    plain = train(VAEConfig(latent_dim=2, hidden=(16,)), digits, epochs=1, progress=False,
                  out=tmp_path / "vae")
    assert main(["sample", str(plain.path), "--by-class"]) == 2
    assert "needs a semi-supervised run" in capsys.readouterr().err


def test_conv_classifier_trains_on_images():
    data = load_dataset("mnist", binarize="dynamic", train_size=1200, test_size=200)
    config = small(classifier_network="conv", channels=(4, 8), classifier=(16,), labels=20,
                   label_batch_size=20)
    config.data.name, config.data.train_size, config.data.test_size = "mnist", 1200, 200
    run = train(config, data, epochs=1)
    assert run.vae.classifier.convs[0].out_channels == 4
    assert 0 <= run.metrics["test_accuracy"] <= 1 and math.isfinite(run.metrics["test_elbo"])
    with pytest.raises(ConfigError, match="classifier_network = \"conv\" needs images"):
        SSVAE(SSVAEConfig(classifier_network="conv"), (64,))
