"""M1+M2 (Kingma et al. 2014): the semi-supervised M2 model trained on a VAE's (M1) codes.

M1 learns features on all training images, M2 is trained on M1's latent codes; the table is
the test accuracy at 100 / 600 / 1000 / 3000 labels.

    python -m examples.m1_m2 [--labels 100 600 1000 3000] [--m1-epochs 25] [--m2-epochs 10]
        [--set KEY=VALUE ...] [--set-for N:KEY=VALUE ...] [--m1-set KEY=VALUE ...]
        [--features mean|sample] [--min-activity 0.01] [--standardize] [--out runs/m1m2]

The pipeline, public API only (docs/m1_m2.md: the recipe and the measured table):

1. M1: ``--m1-config`` (configs/mnist.toml) with 784-600-600-50 softplus MLPs, the Bernoulli
   likelihood on dynamically binarized images, trained on every training image (labels unused)
   into OUT/m1/. A finished run is read, not retrained; one with fewer epochs than
   ``--m1-epochs`` (or an interrupted one) is resumed from its checkpoint.
2. Features: ``vae.encode(x)`` of every training and test image (grey levels) gives the mean
   of q(z|x) (``--features sample``: one fixed draw instead). Units whose mean does not vary
   over the training images (inactive units, Var_x E[z_j|x] < ``--min-activity``: q(z_j|x) is
   the prior for every x, the code carries no information there) are dropped; the rest are
   kept as they are (``--standardize``: scaled to mean 0, sd 1 on the training set, which
   gives the weakly active units the weight of the strong ones; a logistic regression on 100
   labels scored 0.80 on standardised codes against 0.82 on the codes as they are). Written to
   OUT/features.npz (x_train, y_train, x_test, y_test; float32 / int64), a data set pyrovae
   reads like any other, with OUT/features.json saying how it was made.
3. M2: ``--m2-config`` (configs/ssvae-mnist.toml) with ``data.name = OUT/features.npz``,
   ``binarize = "none"``, the Gaussian likelihood with a learned scale per feature, MLP
   networks (``M2_SETS``), trained with ``labels = N`` into OUT/m2-N/ for every N. Finished
   runs on the same features are read, not retrained.
4. OUT/table.md and OUT/table.json: labels, test accuracy (last epoch and at the epoch of best
   validation accuracy), epochs, minutes; printed at the end. OUT/by_class-N.png: M2's
   by-class samples decoded by M1 (one row per class, one style per column).

Tip on a shared CPU: OMP_NUM_THREADS=1 is faster than contending threads.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from pyrovae import PyroVAEError, load, load_config, load_dataset, train

#: M1, on top of --m1-config: Kingma et al.'s two hidden layers of 600 softplus units, z = 50
M1_SETS = ["model.hidden=[600, 600]", "model.latent_dim=50", "model.activation=\"softplus\""]
#: M2 on the features, on top of --m2-config (the measured recipe, docs/m1_m2.md)
M2_SETS = ["data.binarize=\"none\"", "model.likelihood=\"gaussian-learned\"", "model.likelihood.sigma=0.5",
           "model.classifier_network=\"mlp\"", "model.classifier=[500]", "model.hidden=[500]",
           "model.latent_dim=50", "model.activation=\"relu\"", "model.alpha=500.0",
           "train.lr=3e-3", "train.batch_size=1000"]
M1_EPOCHS, M2_EPOCHS = 25, 10
#: the --set-for default: the fewest labels train longest, the rate decaying to 0
LONG_ROW = ["100:train.epochs=30", "100:train.lr_schedule=\"cosine\""]
LABELS = [100, 600, 1000, 3000]


def _sha256(path: Path) -> str:
    """sha256 of the arrays in an .npz (names, dtypes, shapes, values; not the zip's dates)."""
    h = hashlib.sha256()
    with np.load(path, allow_pickle=False) as f:
        for name in sorted(f.files):
            a = np.ascontiguousarray(f[name])
            h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def _same(a, b) -> bool:
    """Same model, data and training, up to the display keys (progress bar, log interval)."""
    quiet = {"progress": True, "log_every": 50, "eval_batch_size": 1000, "checkpoint_every": 0}
    return dataclasses.replace(a, train=dataclasses.replace(a.train, **quiet)) == \
        dataclasses.replace(b, train=dataclasses.replace(b.train, **quiet))


def _finished(out: Path) -> bool:
    return (out / "metrics.json").is_file()


def train_m1(config, out: Path, data=None):
    """Train M1 (``config``, a RunConfig) into ``out``: read a finished run with at least as
    many epochs, resume a shorter or interrupted one (checkpoint.pt), else train from scratch.
    Returns the Run."""
    if _finished(out):
        run = load(out)
        if run.config.model != config.model or run.config.data != config.data:
            raise PyroVAEError(f"'{out}' holds an M1 run of another config; remove it or "
                               f"choose another --out")
        if run.config.train.epochs >= config.train.epochs:
            return run
    data = data if data is not None else load_dataset(config.data)
    resume = (out / "checkpoint.pt").is_file()
    return train(config, data, out=out, resume=resume, force=not resume)


@torch.no_grad()
def encode_all(vae, x: torch.Tensor, features: str = "mean", seed: int = 0,
               batch_size: int = 1000) -> torch.Tensor:
    """Codes of x [N, D] under q(z|x): its mean, or one draw (``features = "sample"``,
    repeatable for a ``seed``) -> [N, L]."""
    vae.eval()
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, x.shape[0], batch_size):
        mean, std = vae.encode(x[i:i + batch_size])
        if features == "sample":
            mean = mean + std * torch.randn(mean.shape, generator=gen)
        out.append(mean)
    return torch.cat(out)


def make_features(m1_run, path: Path, features: str = "mean", min_activity: float = 0.01,
                  standardize: bool = False, seed: int = 0) -> dict:
    """Encode M1's training and test images (grey levels, as loaded with binarize = "none")
    and write the .npz at ``path`` (x_train, y_train, x_test, y_test); returns what
    features.json records (settings, kept units, their activity)."""
    source = dataclasses.replace(m1_run.config.data, binarize="none")
    data = load_dataset(source)
    if data.train_y is None or data.test_y is None:
        raise PyroVAEError(f"M2 needs labels, but the data set {source.name!r} has none")
    vae = m1_run.vae
    train_mean = encode_all(vae, data.train_x, "mean")
    activity = train_mean.var(dim=0)           # Var_x E[z_j|x] (Burda et al.'s active units)
    keep = torch.nonzero(activity >= min_activity).flatten()
    if keep.numel() == 0:
        raise PyroVAEError(f"no unit of M1 has activity >= {min_activity:g}; lower "
                           f"--min-activity or train M1 longer")
    if features == "mean":
        x_train, x_test = train_mean, encode_all(vae, data.test_x, "mean")
    else:
        x_train = encode_all(vae, data.train_x, "sample", seed=seed)
        x_test = encode_all(vae, data.test_x, "sample", seed=seed + 1)
    fill = x_train.mean(0)  # what a dropped unit's code is set to when decoding (M1's view)
    x_train, x_test = x_train[:, keep], x_test[:, keep]
    mu, sd = torch.zeros(keep.numel()), torch.ones(keep.numel())
    if standardize:
        mu, sd = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
        x_train, x_test = (x_train - mu) / sd, (x_test - mu) / sd
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, x_train=x_train.numpy().astype(np.float32),
             y_train=data.train_y.numpy().astype(np.int64),
             x_test=x_test.numpy().astype(np.float32),
             y_test=data.test_y.numpy().astype(np.int64))
    tmp.replace(path)
    return {"m1_run": str(m1_run.path), "m1_step": m1_run.metrics.get("steps"),
            "m1_epochs": m1_run.metrics.get("epochs"), "features": features,
            "min_activity": min_activity, "standardize": standardize, "seed": seed,
            "units": int(train_mean.shape[1]), "kept": keep.tolist(),
            "activity": [round(float(a), 5) for a in activity],
            "fill": fill.tolist(), "shift": mu.tolist(), "scale": sd.tolist(),
            "train": list(x_train.shape), "test": list(x_test.shape)}


def features_for(m1_run, out: Path, features="mean", min_activity=0.01, standardize=False,
                 seed=0) -> tuple[Path, str]:
    """OUT/features.npz for this M1 run and settings (rewritten only when they changed);
    returns (its path, its sha256)."""
    path, info_path = out / "features.npz", out / "features.json"
    wanted = {"m1_run": str(m1_run.path), "m1_step": m1_run.metrics.get("steps"),
              "m1_epochs": m1_run.metrics.get("epochs"), "features": features,
              "min_activity": min_activity, "standardize": standardize, "seed": seed}
    if path.is_file() and info_path.is_file():
        info = json.loads(info_path.read_text())
        if ({k: info.get(k) for k in wanted} == wanted and "fill" in info
                and info.get("sha256") == _sha256(path)):
            return path, info["sha256"]
    info = make_features(m1_run, path, features, min_activity, standardize, seed)
    info["sha256"] = _sha256(path)
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    return path, info["sha256"]


@torch.no_grad()
def codes_to_images(m1_vae, features: torch.Tensor, info: dict) -> torch.Tensor:
    """M2's feature vectors [N, K] back to M1's codes z [N, L] (dropped units at their
    training mean, standardisation undone) and through M1's decoder: E[x|z] [N, D]."""
    z = torch.tensor(info["fill"]).repeat(features.shape[0], 1)
    z[:, info["kept"]] = features * torch.tensor(info["scale"]) + torch.tensor(info["shift"])
    return m1_vae.decode(z)


def save_by_class_images(m1_run, m2_run, info: dict, path: Path, n_columns: int = 10,
                         seed: int = 0) -> None:
    """M2's by-class picture through M1's decoder: row y decodes M2's E[features | y, z_j]
    for n_columns styles z_j ~ N(0, I) shared down each column (M2's own pictures show the
    K feature values as a strip, which says little)."""
    from torchvision.utils import save_image

    from pyrovae.kinds.ssvae import sample_by_class

    features = sample_by_class(m2_run.vae, n_columns=n_columns, seed=seed)  # [C * n, K]
    images = codes_to_images(m1_run.vae, features, info)
    shape = tuple(m1_run.vae.input_shape)
    shape = shape if len(shape) == 3 else (1, 1, images.shape[-1])
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images.reshape(-1, *shape).clamp(0, 1), path, nrow=n_columns, padding=1,
               pad_value=0.5)


def m2_config(config_path, features_path: Path, labels: int, sets=(), epochs=None):
    """The M2 RunConfig: ``config_path`` + M2_SETS + ``epochs`` + ``sets`` (in that order, the
    last one wins) on the features file."""
    overrides = [*M2_SETS, f"data.name=\"{features_path}\"", f"model.labels={labels}",
                 *([f"train.epochs={epochs}"] if epochs is not None else []), *sets]
    return load_config(config_path, overrides)


def train_m2(config, out: Path, features_sha: str, data=None):
    """Train M2 into ``out``, or read it when finished on the same features (their sha256 is
    kept in OUT/m2-runs.json beside the run folders). Returns the Run."""
    ledger_path = out.parent / "m2-runs.json"
    ledger = json.loads(ledger_path.read_text()) if ledger_path.is_file() else {}
    if _finished(out) and ledger.get(out.name) == features_sha:
        run = load(out)
        if _same(run.config, config):
            return run
    data = data if data is not None else load_dataset(config.data)
    run = train(config, data, out=out, force=True)
    ledger = json.loads(ledger_path.read_text()) if ledger_path.is_file() else {}
    ledger[out.name] = features_sha
    ledger_path.write_text(json.dumps(ledger, indent=2) + "\n")
    return run


def table_row(run) -> dict:
    m, tc = run.metrics, run.config.train
    return {"labels": m["labels"], "test_accuracy": m["test_accuracy"],
            "test_accuracy_at_best_val": m["test_accuracy_at_best_val"],
            "best_val_epoch": m["best_val_epoch"], "epochs": m["epochs"], "lr": tc.lr,
            "alpha": m["alpha"], "test_elbo": m["test_elbo"], "minutes": m["seconds"] / 60,
            "run": str(run.path)}


def write_table(rows: list[dict], m1: dict, out: Path) -> str:
    lines = [f"M1: {m1['run']}, {m1['epochs']} epochs, test ELBO {m1['test_elbo']:.1f}, "
             f"{m1['minutes']:.1f} minutes; features: {m1['features']}", "",
             "| labels | test accuracy (last epoch) | at best validation (epoch) | epochs | "
             "minutes |", "|---|---|---|---|---|"]
    lines += [f"| {r['labels']} | {r['test_accuracy']:.4f} | "
              f"{r['test_accuracy_at_best_val']:.4f} ({r['best_val_epoch']}) | {r['epochs']} | "
              f"{r['minutes']:.1f} |" for r in rows]
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(text)
    (out / "table.json").write_text(json.dumps({"m1": m1, "rows": rows}, indent=2) + "\n")
    return text


def run_pipeline(labels=LABELS, out="runs/m1m2", m1_config="configs/mnist.toml",
                 m2_config_path="configs/ssvae-mnist.toml", m1_epochs=None, m2_epochs=None,
                 m1_sets=(), m2_sets=(), row_sets=None, features="mean", min_activity=0.01,
                 standardize=False, log=print) -> dict:
    """The four steps above; returns {"m1": ..., "rows": [...], "table": markdown}."""
    out = Path(out)
    m1_cfg = load_config(m1_config, [*M1_SETS, *m1_sets,
                                     *([f"train.epochs={m1_epochs}"] if m1_epochs else [])])
    row_sets = row_sets or {}
    log(f"M1 -> {out / 'm1'}")
    m1_run = train_m1(m1_cfg, out / "m1")
    path, sha = features_for(m1_run, out, features, min_activity, standardize,
                             seed=m1_cfg.train.seed)
    info = json.loads((out / "features.json").read_text())
    log(f"features -> {path}: {len(info['kept'])} of {info['units']} units kept")
    configs = {n: m2_config(m2_config_path, path, n, [*m2_sets, *row_sets.get(n, [])],
                            m2_epochs) for n in labels}  # all checked before the first trains
    data = load_dataset(configs[labels[0]].data) if labels else None
    rows = []
    for n in labels:
        run = train_m2(configs[n], out / f"m2-{n}", sha, data)
        rows.append(table_row(run))
        save_by_class_images(m1_run, run, info, out / f"by_class-{n}.png")
        log(json.dumps(rows[-1]))
    m = m1_run.metrics
    m1 = {"run": str(m1_run.path), "epochs": m["epochs"], "test_elbo": m["test_elbo"],
          "minutes": m["seconds"] / 60, "features": f"{info['features']} of q(z|x), "
          f"{len(info['kept'])} of {info['units']} units (activity >= {min_activity:g})"
          + (", standardised" if standardize else "")}
    return {"m1": m1, "rows": rows, "table": write_table(rows, m1, out)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, nargs="*", default=LABELS)
    parser.add_argument("--m1-epochs", type=int, default=M1_EPOCHS)
    parser.add_argument("--m2-epochs", type=int, default=M2_EPOCHS)
    parser.add_argument("--m1-config", default="configs/mnist.toml")
    parser.add_argument("--m2-config", default="configs/ssvae-mnist.toml")
    parser.add_argument("--m1-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config change for every M2 run")
    parser.add_argument("--set-for", action="append", default=None, metavar="N:KEY=VALUE",
                        help="a --set for the M2 run with N labels only (default: "
                             + " ".join(LONG_ROW) + ")")
    parser.add_argument("--features", choices=("mean", "sample"), default="mean")
    parser.add_argument("--min-activity", type=float, default=0.01)
    parser.add_argument("--standardize", action="store_true",
                        help="standardise each kept unit (default: the codes as they are)")
    parser.add_argument("--out", default="runs/m1m2")
    args = parser.parse_args(argv)
    row_sets = {}
    for item in LONG_ROW if args.set_for is None else args.set_for:
        n, sep, setting = item.partition(":")
        if not (sep and n.isdigit() and "=" in setting):
            parser.error(f"--set-for {item!r} is not N:KEY=VALUE, e.g. 100:epochs=50")
        row_sets.setdefault(int(n), []).append(setting)
    try:
        result = run_pipeline(args.labels, args.out, args.m1_config, args.m2_config,
                              args.m1_epochs, args.m2_epochs, args.m1_set, args.set, row_sets,
                              args.features, args.min_activity, args.standardize)
    except PyroVAEError as err:
        parser.exit(2, f"m1_m2: error: {err}\n")
    print(result["table"], end="")


if __name__ == "__main__":
    main()
