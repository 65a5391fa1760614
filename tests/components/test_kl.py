"""The KL term: beta schedules and free bits, in the objective and in training."""

import pytest
import torch

from pyrovae import DataConfig, KLConfig, RunConfig, TrainConfig, VAEConfig, load_dataset, train
from pyrovae.runtime.errors import ConfigError
from pyrovae.objectives.schedules import beta_at
from pyrovae.objectives import make_elbo
from pyrovae.training.trainer import Trainer
from tests.support.tiny_vae import B, by_hand, data, guide_draw, tiny_vae


def test_schedules_by_formula():
    lin = KLConfig(beta=2.0, schedule="linear", warmup=10)
    assert [beta_at(lin, t) for t in (0, 1, 5, 10, 50)] == [0.0, 0.2, 1.0, 2.0, 2.0]
    cyc = KLConfig(beta=1.0, schedule="cyclical", period=8, ramp=0.5)
    assert [beta_at(cyc, t) for t in range(10)] == [0, .25, .5, .75, 1, 1, 1, 1, 0, .25]
    assert beta_at(KLConfig(beta=0.3), 12345) == 0.3
    assert beta_at(KLConfig(beta=0.3, schedule="linear", warmup=0), 0) == 0.3


@pytest.mark.parametrize("fast", [False, True])
def test_training_uses_exactly_the_scheduled_beta_each_step(fast):
    digits = load_dataset("digits", binarize="dynamic", train_size=512)
    kl = KLConfig(beta=1.0, schedule="linear", warmup=7)
    cfg = RunConfig(model=VAEConfig(latent_dim=3, hidden=(16,), kl=kl), data=DataConfig(
        name="digits"), train=TrainConfig(epochs=1, batch_size=64, progress=False, fast=fast))
    trainer = Trainer(cfg, digits, None)
    seen = []
    real_step = trainer.train_step

    def spy(xb):
        seen.append(float(trainer.beta_tensor()))
        return real_step(xb)

    trainer.train_step = spy
    trainer.run()
    assert seen == pytest.approx([min(1.0, t / 7) for t in range(8)], rel=1e-6)
    assert trainer.history[-1]["beta"] == 1.0


def test_beta_argument_scales_the_kl_in_the_loss():
    vae, x = tiny_vae(), data()
    torch.manual_seed(3)
    loss = make_elbo("meanfield").loss(vae.model, vae.guide, x, torch.tensor(0.25))
    _, _, _, kl = by_hand(vae, x, guide_draw(vae, x, 3))
    torch.manual_seed(3)
    loss0 = make_elbo("meanfield").loss(vae.model, vae.guide, x, torch.tensor(0.0))
    assert loss - loss0 == pytest.approx(0.25 * float(kl.sum()), rel=1e-5)


def test_free_bits_floor_each_dimensions_batch_mean_kl():
    vae, x = tiny_vae(), data()
    lam = 0.4
    torch.manual_seed(3)
    fb = make_elbo("meanfield", free_bits=lam).loss(vae.model, vae.guide, x)
    torch.manual_seed(3)
    plain = make_elbo("meanfield").loss(vae.model, vae.guide, x)
    loc, scale = vae.encode(x)
    kl_d = 0.5 * (scale ** 2 + loc ** 2 - 1 - 2 * scale.log())  # [B, L]
    per_dim = kl_d.mean(0)
    assert (per_dim < lam).any() or (per_dim > lam).any()
    expected = plain - float(kl_d.sum()) + B * float(torch.clamp(per_dim, min=lam).sum())
    assert fb == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", ["meanfield", "jit-meanfield"])
def test_free_bits_give_no_gradient_below_the_floor(name):
    """With lambda above every dimension's KL, the KL term is a constant: the gradients are
    those of the reconstruction term alone (beta = 0)."""
    grads = {}
    for key, free_bits, beta in (("floored", 1e3, 1.0), ("recon", 0.0, 0.0)):
        vae, x = tiny_vae(), data()
        elbo = make_elbo(name, free_bits=free_bits)
        torch.manual_seed(0)
        elbo.differentiable_loss(vae.model, vae.guide, x, torch.tensor(beta)).backward()
        grads[key] = [p.grad.clone() for p in vae.parameters()]
    for a, b in zip(grads["floored"], grads["recon"]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_free_bits_train_end_to_end_and_keep_dimensions_active():
    digits = load_dataset("digits", binarize="dynamic")
    base = dict(latent_dim=8, hidden=(64,))
    runs = {lam: train(VAEConfig(**base, kl={"free_bits": lam}), digits, epochs=5,
                       batch_size=64, lr=3e-3, progress=False) for lam in (0.0, 0.5)}
    assert runs[0.5].metrics["test_kl"] > runs[0.0].metrics["test_kl"]


def test_impossible_combinations_fail_at_config_time():
    with pytest.raises(ConfigError, match="free_bits.*meanfield"):
        VAEConfig(elbo="trace", kl={"free_bits": 0.5})
    for prior in ("mog", "vamp", "flow"):
        for elbo in ("meanfield", "jit-meanfield"):
            with pytest.raises(ConfigError, match="closed-form KL.*trace.*jit-trace.*tracegraph"):
                VAEConfig(elbo=elbo, prior=prior)
        assert VAEConfig(elbo="trace", prior=prior).prior.name == prior
    with pytest.raises(ConfigError, match="ramp"):
        KLConfig(ramp=1.5)
