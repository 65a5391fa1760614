"""Polyak/EMA averaging of the weights (``train.ema``): the recursion, the run keeping the
average (history, checkpoint, load, evaluate), and bit-exact resume of an averaged run."""

import sys
from pathlib import Path

import pytest
import torch

from pyrovae import TrainConfig, VAEConfig, evaluate_elbo, load, load_dataset, train
from pyrovae.runtime.errors import ConfigError
from pyrovae.runs import load_checkpoint
from pyrovae.training.averaging import WeightAverage, decay_at

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # examples/ is a folder of the repository, not installed
    sys.path.insert(0, str(ROOT))
from examples.ema_gain import ema_gain  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = dict(progress=False, batch_size=64, lr=3e-3)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", binarize="dynamic")


def small():
    return VAEConfig(latent_dim=4, hidden=(32,))


def test_decay_ramps_up_to_the_configured_value():
    assert decay_at(0.999, 1) == pytest.approx(2 / 11)
    assert decay_at(0.999, 100) == pytest.approx(101 / 110)
    assert decay_at(0.9, 10_000) == 0.9
    assert all(decay_at(0.99, t) <= decay_at(0.99, t + 1) for t in range(1, 2000))


def test_average_follows_the_recursion_and_swaps_back():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    avg = WeightAverage(net, 0.5)
    expected = [p.detach().clone() for p in net.parameters()]
    for step in range(1, 6):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        avg.update(step)
        d = decay_at(0.5, step)
        expected = [d * e + (1 - d) * p.detach() for e, p in zip(expected, net.parameters())]
    live = [p.detach().clone() for p in net.parameters()]
    with avg.applied():
        for p, e in zip(net.parameters(), expected):
            torch.testing.assert_close(p.detach(), e)
    for p, v in zip(net.parameters(), live):  # the live weights are back, bit for bit
        assert torch.equal(p.detach(), v)
    state = avg.averaged_state_dict(net)
    for name, e in zip(["weight", "bias"], expected):
        torch.testing.assert_close(state[name], e)


def test_an_averaged_run_keeps_the_average(digits, tmp_path):
    run = train(small(), digits, out=tmp_path / "run", epochs=2, ema=0.99, **FAST)
    payload = load_checkpoint(tmp_path / "run")
    assert set(payload["model"]) == set(payload["train_model"])
    assert any(not torch.equal(payload["model"][k], payload["train_model"][k])
               for k in payload["model"])
    loaded = load(tmp_path / "run")
    for name, value in loaded.vae.state_dict().items():  # load / evaluate read the average
        assert torch.equal(value, payload["model"][name]), name
    for name, value in run.vae.state_dict().items():  # the returned Run is the average too
        assert torch.equal(value, payload["model"][name]), name
    test = evaluate_elbo(loaded.vae, loaded_data(digits), 1000, seed=0)
    assert test["elbo"] == pytest.approx(run.history[-1]["test_elbo"], abs=1e-9)
    assert run.metrics["test_elbo"] == pytest.approx(test["elbo"], abs=1e-9)


def loaded_data(digits):
    return digits.test_data()


def test_averaging_changes_the_numbers_and_off_is_the_plain_run(digits):
    plain = train(small(), digits, epochs=2, **FAST)
    off = train(small(), digits, epochs=2, ema=0.0, **FAST)
    averaged = train(small(), digits, epochs=2, ema=0.99, **FAST)
    assert off.history[-1]["test_elbo"] == plain.history[-1]["test_elbo"]
    assert averaged.history[-1]["test_elbo"] != plain.history[-1]["test_elbo"]
    # the same training trajectory: the train ELBO (of the live weights) is unchanged
    assert averaged.history[-1]["train_elbo"] == plain.history[-1]["train_elbo"]


def test_resumed_averaged_run_equals_one_uninterrupted_run(digits, tmp_path):
    whole = train(small(), digits, out=tmp_path / "whole", epochs=3, ema=0.95, **FAST)
    train(small(), digits, out=tmp_path / "part", epochs=2, ema=0.95, **FAST)
    resumed = train(small(), digits, out=tmp_path / "part", resume=True, epochs=3, ema=0.95,
                    **FAST)
    a, b = load_checkpoint(tmp_path / "whole"), load_checkpoint(tmp_path / "part")
    for key in ("model", "train_model"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa
    assert strip(resumed.history) == strip(whole.history)


@pytest.mark.parametrize("ema, match", [(1.0, "train.ema = 1 would keep the starting weights"),
                                        (1.5, "train.ema"), (-0.1, "train.ema")])
def test_bad_decay_is_refused_in_one_line(ema, match):
    with pytest.raises(ConfigError, match=match) as err:
        TrainConfig(ema=ema)
    assert "\n" not in str(err.value)


def test_ema_gain_compares_the_kept_average_with_the_live_weights(digits, tmp_path):
    run = train(small(), digits, out=tmp_path / "run", epochs=2, ema=0.99, **FAST)
    gain = ema_gain(tmp_path / "run", points=20, nll_samples=50)
    assert gain["averaged_test_elbo"] == pytest.approx(run.metrics["test_elbo"], abs=1e-9)
    assert gain["averaged_test_elbo"] != gain["live_test_elbo"]
    assert gain["nll_gain"] == pytest.approx(gain["live_test_nll"] - gain["averaged_test_nll"])
    plain = tmp_path / "plain"
    train(small(), digits, out=plain, epochs=1, **FAST)
    with pytest.raises(SystemExit, match="not trained with train.ema"):
        ema_gain(plain, points=5, nll_samples=5)
