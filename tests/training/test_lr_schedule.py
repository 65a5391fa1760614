"""The learning-rate schedule: lr_t by formula, the rate Adam gets at each step, config errors."""

import math

import pytest

from pyrovae import DataConfig, RunConfig, TrainConfig, VAEConfig, load_dataset, train
from pyrovae.runtime.errors import ConfigError
from pyrovae.training.lr_schedule import lr_at
from pyrovae.training.trainer import Trainer


def test_cosine_starts_at_lr_halves_midway_ends_at_lr_min_and_only_decreases():
    lr, lr_min, total = 4e-3, 1e-4, 1000
    rates = [lr_at("cosine", lr, lr_min, t, total) for t in range(total + 1)]
    assert rates[0] == lr and rates[total // 2] == pytest.approx((lr + lr_min) / 2)
    assert rates[-1] == pytest.approx(lr_min)
    assert all(b <= a for a, b in zip(rates, rates[1:]))
    assert lr_at("cosine", lr, lr_min, 250, total) == pytest.approx(
        lr_min + (lr - lr_min) * (1 + math.cos(math.pi / 4)) / 2)
    assert all(lr_at("constant", lr, lr_min, t, total) == lr for t in (0, 500, 1000))


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_adam_takes_the_scheduled_rate_at_every_step(schedule, monkeypatch):
    seen = []
    step = Trainer.train_step

    def record(self, xb):
        seen.append((self.step, self.optimizer.param_groups[0]["lr"]))
        return step(self, xb)

    monkeypatch.setattr(Trainer, "train_step", record)
    data_config = DataConfig(name="digits", binarize="static")
    data = load_dataset(data_config)
    config = RunConfig(model=VAEConfig(latent_dim=2, hidden=(16,)), data=data_config,
                       train=TrainConfig(epochs=2, batch_size=256, lr=2e-3, lr_schedule=schedule,
                                         lr_min=1e-4, progress=False))
    train(config, data)
    total = len(seen)
    assert total == 2 * (data.train_data().shape[0] // 256) and [s for s, _ in seen] == list(
        range(total))
    for t, rate in seen:
        assert rate == pytest.approx(lr_at(schedule, 2e-3, 1e-4, t, total), rel=1e-12)
    assert (seen[-1][1] < 2e-3) == (schedule == "cosine")


@pytest.mark.parametrize("kw, message", [
    ({"lr_schedule": "step"}, "not one of: constant, cosine"),
    ({"lr": 1e-3, "lr_min": 2e-3}, "lr_min = 0.002 is above train.lr"),
    ({"lr_min": -1.0}, "must be >= 0"),
])
def test_bad_schedules_fail_clearly(kw, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kw)
