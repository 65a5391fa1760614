"""What Polyak averaging (``train.ema``) gained a run: the averaged weights it keeps against the
live weights it trained, on the same test images.

    python -m examples.ema_gain runs/reproduce-long/burda-vae-1 [--points 2000]
        [--nll-samples 1000] [--out RUN/ema_gain.json]

An averaged run's checkpoint holds both (``model``: theta_bar, ``train_model``: theta_T;
docs/training.md). Both are evaluated with the same seed: the test ELBO on every test image
and the importance-sampled NLL (K = ``--nll-samples``) on the first ``--points``; the
difference is paired, point by point, so its standard error is that of the per-point
differences. Written to ``--out`` (JSON) and printed.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from pyrovae import evaluate_elbo, load, load_dataset
from pyrovae.evaluation import log_likelihood
from pyrovae.runtime.files import write_json
from pyrovae.runs import load_checkpoint


def paired(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """mean and standard error of a - b over points."""
    d = (a - b).double()
    return float(d.mean()), float(d.std() / math.sqrt(d.numel()))


def ema_gain(run_dir: str | Path, points: int = 2000, nll_samples: int = 1000) -> dict:
    run = load(run_dir)
    payload = load_checkpoint(run_dir)
    if "train_model" not in payload:
        raise SystemExit(f"{run_dir} was not trained with train.ema > 0: nothing to compare")
    data = load_dataset(run.config.data.name, binarize=run.config.data.binarize,
                        seed=run.config.data.seed)
    x = data.test_data()
    out = {"run": str(run_dir), "ema": run.config.train.ema, "points": points,
           "nll_samples": nll_samples}
    results = {}
    for name, state in (("averaged", payload["model"]), ("live", payload["train_model"])):
        run.vae.load_state_dict(state)
        run.vae.eval()
        elbo = evaluate_elbo(run.vae, x, 1000, seed=0)
        nll = -log_likelihood(run.vae, x[:points], nll_samples, seed=0, progress=True)
        results[name] = nll
        out[f"{name}_test_elbo"] = elbo["elbo"]
        out[f"{name}_test_nll"] = float(nll.mean())
    out["nll_gain"], out["nll_gain_se"] = paired(results["live"], results["averaged"])
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--points", type=int, default=2000)
    p.add_argument("--nll-samples", type=int, default=1000)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    result = ema_gain(args.run, args.points, args.nll_samples)
    write_json(Path(args.out or Path(args.run) / "ema_gain.json"), result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
