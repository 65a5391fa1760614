"""FactorVAE (pyrovae/objectives/factor_vae.py, ``[model.kl] decomposition = "factor"``).

Known answers: the loss is meanfield's plus gamma * N * mean_i logit D(z_i) on the same draws,
D's logits written out here from its weights; the discriminator, trained by FactorTraining on a
toy Gaussian q(z), separates q(z) from its permuted version and estimates the closed-form total
correlation; a 1-epoch run on dsprites-small trains and checkpoints the discriminator; a run
stopped after epoch 1 and resumed equals an uninterrupted one bit for bit, the discriminator and
its Adam included; every parameter is stepped by exactly one optimizer."""

import math

import pytest
import torch
from pyro import poutine

from pyrovae import VAEConfig, train
from pyrovae.config import DataConfig, KLConfig, RunConfig, TrainConfig
from pyrovae.config.fields import section_from_dict
from pyrovae.data import load_dataset
from pyrovae.objectives import objective_for
from pyrovae.objectives.factor_vae import (FactorSettings, FactorTraining, permute_dims,
                                           tc_estimate)
from pyrovae.runs import load_checkpoint, make_model
from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.registry import MODEL_KINDS
from pyrovae.runtime.rng import seeded
from pyrovae.training.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


def _logits_by_hand(disc, z):
    """The MLP written out: Linear, LeakyReLU(0.2), ..., Linear -> one logit per row."""
    linears = [m for m in disc.net if isinstance(m, torch.nn.Linear)]
    h = z
    for lin in linears[:-1]:
        h = h @ lin.weight.T + lin.bias
        h = torch.where(h > 0, h, 0.2 * h)
    return (h @ linears[-1].weight.T + linears[-1].bias).squeeze(-1)


def test_penalty_is_gamma_times_the_mean_logit_and_trains_z_only():
    s = FactorSettings(factor_gamma=7.0, factor_hidden=(5, 4))
    side = FactorTraining(3, s, seed=1)
    z = torch.randn(8, 3, generator=torch.Generator().manual_seed(0)).requires_grad_()
    penalty = side.penalty(z, n_data=100)
    with torch.no_grad():
        expected = 7.0 * 100 * _logits_by_hand(side.discriminator, z).mean()
    assert float(penalty.detach()) == pytest.approx(float(expected), rel=1e-6)
    penalty.backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert all(p.grad is None for p in side.parameters())  # the VAE's gradient skips D


def test_loss_is_meanfield_plus_the_penalty_on_the_same_draws():
    digits = load_dataset("digits", binarize="static", train_size=128, test_size=16)
    x, n = digits.test_data()[:16], 128
    base = dict(latent_dim=3, hidden=(16,), likelihood="bernoulli")
    plain_cfg = VAEConfig(**base)
    factor_cfg = VAEConfig(**base, kl=KLConfig(decomposition="factor", factor_gamma=5.0,
                                               factor_hidden=(8,)))
    with seeded(0):
        vae = make_model(plain_cfg, (64,))
    objective = objective_for(factor_cfg)
    side = objective.decomposition.side_training(3, seed=3)
    for draw in range(3):
        with seeded(draw):
            a = float(objective_for(plain_cfg).differentiable_loss(vae.model, vae.guide, x,
                                                                    n_data=n).detach())
        with seeded(draw):
            b = float(objective.differentiable_loss(vae.model, vae.guide, x, n_data=n).detach())
        with seeded(draw):
            z = poutine.trace(vae.guide).get_trace(x, n_data=n).nodes["z"]["value"]
        with torch.no_grad():
            penalty = 5.0 * n * float(_logits_by_hand(side.discriminator, z).mean())
        assert b - a == pytest.approx(penalty, rel=1e-4, abs=1e-3)


def test_permute_dims_permutes_each_column_alone():
    z = torch.arange(40.0).reshape(20, 2)
    p = permute_dims(z, torch.Generator().manual_seed(0))
    for j in range(2):
        assert sorted(p[:, j].tolist()) == z[:, j].tolist()
    assert not torch.equal(p, z)


def _gaussian(rho, n, gen):
    """n draws of N(0, [[1, rho], [rho, 1]])."""
    e = torch.randn(n, 2, generator=gen)
    return torch.stack([e[:, 0], rho * e[:, 0] + math.sqrt(1 - rho ** 2) * e[:, 1]], 1)


def _trained(rho, steps=800, batch=1024, seed=0):
    """A discriminator trained as in a run: penalty() keeps each batch of q(z) draws, step()
    trains on its halves (a permuted second half as the negatives)."""
    torch.manual_seed(seed)
    side = FactorTraining(2, FactorSettings(factor_hidden=(64, 64), factor_lr=1e-3), seed=seed)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        side.penalty(_gaussian(rho, batch, gen), n_data=batch)
        side.step()
    return side, gen


def test_discriminator_separates_q_from_its_permuted_version():
    """rho = 0.99: the Bayes classifier of N(0, Sigma) against N(0, I) is right 90% of the
    time (Monte Carlo, 4e5 draws), so > 0.8 asks D for most of it (at rho = 0.8 the Bayes
    accuracy is 0.69: no classifier passes 0.8 there)."""
    side, gen = _trained(0.99)
    z = _gaussian(0.99, 20000, gen)
    neg = permute_dims(_gaussian(0.99, 20000, gen), gen)
    with torch.no_grad():
        acc = 0.5 * ((side.discriminator(z) > 0).float().mean()
                     + (side.discriminator(neg) < 0).float().mean())
    assert float(acc) > 0.8


def test_tc_estimate_meets_the_closed_form():
    """TC = 1/2 (sum_j log Sigma_jj - log det Sigma) = -1/2 log(1 - rho^2) = 0.511 nats at
    rho = 0.8. The estimate's Monte Carlo error on 20,000 draws is about 0.01 nats; the rest is
    D's approximation and optimisation error (a finite MLP after 800 Adam steps of 512 + 512
    draws): over seeds 0-4 the estimates fell in 0.48-0.54, so 0.1 nats (20% of TC) is twice
    that spread. An untrained D is far off, so the test can fail."""
    rho = 0.8
    closed = 0.5 * (0.0 - math.log(1 - rho ** 2))
    side, gen = _trained(rho)
    assert tc_estimate(side.discriminator, _gaussian(rho, 20000, gen)) == pytest.approx(
        closed, abs=0.1)
    untrained = FactorTraining(2, FactorSettings(factor_hidden=(64, 64)), seed=5)
    assert abs(tc_estimate(untrained.discriminator, _gaussian(rho, 20000, gen)) - closed) > 0.1


def _dsprites(epochs=1, **kl):
    return RunConfig(model=VAEConfig(latent_dim=4, hidden=(32,), likelihood="bernoulli",
                                     kl=KLConfig(decomposition="factor", factor_hidden=(32, 32),
                                                 **kl)),
                     data=DataConfig(name="dsprites-small", image_size=(16,), train_size=512,
                                     test_size=128),
                     train=TrainConfig(epochs=epochs, batch_size=64, progress=False,
                                       checkpoint_every=0))


def test_trains_one_epoch_on_dsprites_and_checkpoints_the_discriminator(tmp_path):
    cfg = _dsprites()
    run = train(cfg, load_dataset(cfg.data), out=str(tmp_path / "run"))
    assert math.isfinite(run.metrics["test_elbo"])
    saved = load_checkpoint(tmp_path / "run")
    disc = saved["decomposition"]
    assert set(disc) == {"model", "optimizer", "epoch_sums"}
    assert len(disc["optimizer"]["state"]) == len(disc["model"])  # D took Adam steps
    fresh = FactorTraining(4, FactorSettings(factor_hidden=(32, 32)), seed=cfg.train.seed)
    moved = [not torch.equal(v, disc["model"][k]) for k, v in fresh.state_dict()["model"].items()]
    assert all(moved)  # trained from its seeded start
    assert not any("discriminator" in k for k in saved["model"])  # not in the VAE's weights


def test_resumed_run_equals_an_uninterrupted_one_bit_for_bit(tmp_path):
    cfg2 = _dsprites(epochs=2, factor_gamma=10.0)
    data = load_dataset(cfg2.data)
    train(cfg2, data, out=str(tmp_path / "whole"))
    train(_dsprites(epochs=1, factor_gamma=10.0), data, out=str(tmp_path / "part"))
    train(cfg2, data, out=str(tmp_path / "part"), resume=True)
    a, b = load_checkpoint(tmp_path / "whole"), load_checkpoint(tmp_path / "part")
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    for name in a["decomposition"]["model"]:
        assert torch.equal(a["decomposition"]["model"][name],
                           b["decomposition"]["model"][name]), name
    for i, state in a["decomposition"]["optimizer"]["state"].items():
        other = b["decomposition"]["optimizer"]["state"][i]
        assert all(torch.equal(state[k], other[k]) for k in ("exp_avg", "exp_avg_sq")), i
    history = [(tmp_path / name / "history.csv").read_text().splitlines() for name in
               ("whole", "part")]
    strip = [[line.rsplit(",", 1)[0] for line in lines] for lines in history]  # (seconds)
    assert strip[0] == strip[1]  # D's epoch numbers too


def test_history_records_the_discriminators_loss_accuracy_and_tc(tmp_path):
    """history.csv: D's epoch means; the loss is the BCE of its two halves (log 2 at chance),
    the accuracy a share, and each equals what FactorTraining.epoch_metrics averaged."""
    import csv

    cfg = _dsprites(epochs=2)
    train(cfg, load_dataset(cfg.data), out=str(tmp_path / "run"))
    with open(tmp_path / "run" / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2
    for row in rows:
        loss, right, tc = (float(row[k]) for k in ("disc_loss", "disc_accuracy", "disc_tc"))
        assert 0.0 < loss < 2.0 and 0.0 <= right <= 1.0 and math.isfinite(tc)
    assert float(rows[0]["disc_loss"]) == pytest.approx(math.log(2), abs=0.1)  # early: chance


def test_epoch_metrics_average_the_steps_and_start_afresh():
    side = FactorTraining(3, FactorSettings(factor_hidden=(8,)), seed=0)
    losses = []
    for i in range(3):
        with seeded(i):
            side._z = torch.randn(16, 3)
        side.step()
        losses.append(float(side.last_loss))
    got = side.epoch_metrics()
    assert got["disc_loss"] == pytest.approx(sum(losses) / 3, rel=1e-6)
    assert all(math.isnan(v) for v in side.epoch_metrics().values())  # nothing since


def test_every_parameter_is_stepped_by_exactly_one_optimizer():
    cfg = _dsprites()
    trainer = Trainer(cfg, load_dataset(cfg.data), out_dir=None)
    assert trainer.objective == "meanfield"  # train.fast falls back to the Python ELBO
    vae_ids = [id(p) for g in trainer.optimizer.param_groups for p in g["params"]]
    side_ids = [id(p) for g in trainer.side.optimizer.param_groups for p in g["params"]]
    disc_ids = {id(p) for p in trainer.side.discriminator.parameters()}
    assert not disc_ids & set(vae_ids)  # the VAE's Adam does not hold D
    assert set(side_ids) == disc_ids
    everything = {id(p) for p in trainer.model.parameters()} | disc_ids
    assert sorted(vae_ids + side_ids) == sorted(everything)  # each once, none left out
    before = [p.detach().clone() for p in trainer.side.parameters()]
    trainer.prepare()
    trainer._guarded_step(trainer.data.train_x[:64])
    assert all(not torch.equal(a, p) for a, p in zip(before, trainer.side.parameters()))


@pytest.mark.parametrize("table,words", [
    ({"kind": "hvae", "kl": {"decomposition": "factor"}}, ["kind = \"hvae\""]),
    ({"elbo": "trace", "kl": {"decomposition": "factor"}}, ["elbo = \"meanfield\""]),
    ({"num_particles": 2, "kl": {"decomposition": "factor"}}, ["num_particles = 1"]),
    ({"elbo": "jit-meanfield", "kl": {"decomposition": "factor"}}, ["elbo = \"meanfield\""]),
    ({"kl": {"decomposition": "tc", "factor_gamma": 3.0}}, ["factor_gamma"]),
    ({"kl": {"decomposition": "factor", "factor_lr": 0.0}}, ["factor_lr"]),
])
def test_refusals_are_one_line(table, words):
    cls = MODEL_KINDS.capability(table.get("kind", "vae"), "config")
    base = {"latent_dim": 2, "hidden": [8]} if table.get("kind", "vae") == "vae" else {}
    with pytest.raises(ConfigError) as err:
        section_from_dict(cls, {**base, **table}, "model")
    line = str(err.value)
    assert "\n" not in line
    for w in words:
        assert w in line, line


def test_a_bad_discriminator_size_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="factor_hidden") as err:
        FactorTraining(3, FactorSettings(factor_hidden=(8, 0)))
    assert "\n" not in str(err.value)
