"""examples/m1_m2.py end to end on scikit-learn's digits (M1 VAE -> features -> M2), seconds."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from pyrovae import load, load_dataset

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # examples/ is a folder of the repository, not installed
    sys.path.insert(0, str(ROOT))
from examples.m1_m2 import main, run_pipeline  # noqa: E402

M1_CONFIG, M2_CONFIG = str(ROOT / "configs/digits.toml"), str(ROOT / "configs/ssvae-digits.toml")

M1_SETS = ["model.hidden=[64]", "model.latent_dim=8", "train.progress=false"]
M2_SETS = ["model.hidden=[32]", "model.classifier=[32]", "model.latent_dim=4",
           "train.progress=false", "train.batch_size=100", "model.label_batch_size=50"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("m1m2")
    result = run_pipeline(labels=[50], out=out, m1_config=M1_CONFIG,
                          m2_config_path=M2_CONFIG, m1_epochs=15,
                          m2_epochs=2, m1_sets=M1_SETS, m2_sets=M2_SETS, log=lambda _: None)
    return out, result


def test_features_file(pipeline):
    out, _ = pipeline
    info = json.loads((out / "features.json").read_text())
    with np.load(out / "features.npz") as f:
        assert sorted(f.files) == ["x_test", "x_train", "y_test", "y_train"]
        x_train, x_test, y_train = f["x_train"], f["x_test"], f["y_train"]
        assert x_train.dtype == np.float32 and f["y_test"].dtype == np.int64
        assert x_train.shape == (1500, len(info["kept"]))
        assert x_test.shape == (297, x_train.shape[1])
        assert 1 <= x_train.shape[1] <= 8 and info["units"] == 8
    digits = load_dataset("digits")                                 # same order, same labels
    np.testing.assert_array_equal(y_train, digits.train_y.numpy())
    m1 = load(out / "m1").vae                                       # the means of q(z|x)
    means = m1.encode(digits.train_x[:100])[0][:, info["kept"]].detach().numpy()
    np.testing.assert_allclose(x_train[:100], means, rtol=1e-5, atol=1e-6)
    activity = np.array(info["activity"])
    assert (activity[info["kept"]] >= 0.01).all()
    assert (np.delete(activity, info["kept"]) < 0.01).all()


def test_standardised_features(pipeline, tmp_path):
    from examples.m1_m2 import make_features

    out, _ = pipeline
    info = make_features(load(out / "m1"), tmp_path / "f.npz", standardize=True)
    with np.load(tmp_path / "f.npz") as f:
        assert f["x_train"].shape[1] == len(info["kept"])
        np.testing.assert_allclose(f["x_train"].mean(0), 0, atol=1e-4)
        np.testing.assert_allclose(f["x_train"].std(0), 1, atol=1e-2)


def test_m2_run_and_table(pipeline):
    out, result = pipeline
    run = load(out / "m2-50")
    assert run.config.model.kind == "ssvae" and run.config.model.likelihood == "gaussian-learned"
    assert run.config.data.name == str(out / "features.npz") and run.config.data.binarize == "none"
    assert run.metrics["labels"] == 50 and 0 <= run.metrics["test_accuracy"] <= 1
    table = json.loads((out / "table.json").read_text())
    assert [r["labels"] for r in table["rows"]] == [50] and table["m1"]["epochs"] == 15
    row = table["rows"][0]
    assert row["test_accuracy"] == run.metrics["test_accuracy"] and row["epochs"] == 2
    assert "| 50 |" in (out / "table.md").read_text() and result["table"].startswith("M1:")
    assert (out / "by_class-50.png").stat().st_size > 0     # M2's samples through M1's decoder


def test_codes_back_to_images(pipeline):
    """codes_to_images inverts the features: a test point's feature vector decodes to M1's
    reconstruction from the mean of q(z|x) (the dropped units' means are near their fill)."""
    import torch

    from examples.m1_m2 import codes_to_images

    out, _ = pipeline
    info = json.loads((out / "features.json").read_text())
    m1 = load(out / "m1").vae
    with np.load(out / "features.npz") as f:
        feats = torch.from_numpy(f["x_test"][:20])
    x = load_dataset("digits").test_x[:20]
    z = m1.encode(x)[0]
    z[:, [i for i in range(8) if i not in info["kept"]]] = torch.tensor(
        [v for i, v in enumerate(info["fill"]) if i not in info["kept"]])
    torch.testing.assert_close(codes_to_images(m1, feats, info), m1.decode(z))


def test_finished_runs_are_read_not_retrained(pipeline, capsys):
    out, _ = pipeline
    stamps = {p: p.stat().st_mtime_ns for p in (out / "m1" / "checkpoint.pt",
                                                 out / "m2-50" / "checkpoint.pt",
                                                 out / "features.npz")}
    main(["--labels", "50", "--out", str(out), "--m1-config", M1_CONFIG,
          "--m2-config", M2_CONFIG, "--m1-epochs", "15", "--m2-epochs", "2",
          *[a for s in M1_SETS for a in ("--m1-set", s)],
          *[a for s in M2_SETS for a in ("--set", s)]])
    assert "| 50 |" in capsys.readouterr().out
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}
