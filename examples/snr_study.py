"""The gradient signal-to-noise study of Rainforth et al. 2018 and Tucker et al. 2018, on MNIST.

At fixed parameters (a VAE trained for a few epochs with the main job's config, or a run you
name) and on one fixed minibatch, draw S gradients of each estimator and report, for the
encoder's and the decoder's parameters separately, the per-parameter signal-to-noise ratio

    SNR = (1/P) sum_j |E[g_j]| / std(g_j)          (pyrovae.evaluation.gradients)

against K, the number of importance samples per group. Estimators: IWAE (plain gradient),
IWAE-STL, IWAE-DReG, MIWAE(M, K), CIWAE(b = 0.5, K), PIWAE(M, K). The findings to reproduce:
IWAE's encoder SNR falls with K (as 1/sqrt(K)) while its decoder SNR rises (as sqrt(K));
DReG's encoder SNR rises with K.

    python -m examples.snr_study                          # trains 3 epochs first (OUT/run)
    python -m examples.snr_study --run runs/snr-study/run # or the parameters of a trained run
    python -m examples.snr_study --ks 1 4 16 64 --draws 100 --out runs/snr-study

Writes OUT/snr.csv (one row per estimator and K), OUT/snr.json (the settings too) and
OUT/snr.png (SNR against K, encoder and decoder panels, log-log).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from pyrovae import load, load_dataset, train
from pyrovae.config import apply_overrides, load_config
from pyrovae.evaluation.gradients import elbo_gradient_variance, fixed_minibatch
from pyrovae.runtime.files import write_csv, write_json
from pyrovae.objectives import BoundObjective

#: label -> (bound, gradient, extra settings); K is the x axis
ESTIMATORS = {
    "IWAE": ("iwae", "reparam", {}),
    "IWAE-STL": ("iwae", "stl", {"biased": True}),   # biased for IWAE: asked for by name
    "IWAE-DReG": ("iwae", "dreg", {}),
    "MIWAE (M=4)": ("miwae", "reparam", {"groups": 4}),
    "CIWAE (b=0.5)": ("ciwae", "reparam", {"ciwae_beta": 0.5}),
    "PIWAE (M=4)": ("piwae", "reparam", {"groups": 4}),
}


def trained_model(args):
    """(the VAE, its data): a run folder's, or a fresh short run of ``args.config``."""
    if args.run:
        run = load(args.run)
        return run.vae, load_dataset(run.config.data)
    config = apply_overrides(load_config(args.config), [f"epochs={args.epochs}"])
    data = load_dataset(config.data)
    return train(config, data, out=Path(args.out) / "run", force=True).vae, data


def measure(vae, xb, ks, draws, seed) -> list[dict]:
    rows = []
    bar = tqdm(total=len(ks) * len(ESTIMATORS), desc="estimators x K")
    for k in ks:
        for label, (bound, gradient, extra) in ESTIMATORS.items():
            objective = BoundObjective(bound, gradient, k, **extra)
            start = time.perf_counter()
            g = elbo_gradient_variance(vae, xb, objective, draws=draws, seed=seed)
            row = {"estimator": label, "bound": bound, "gradient": gradient, "K": k,
                   "draws_per_point": objective.bound.particles,
                   "seconds_per_draw": (time.perf_counter() - start) / draws}
            for group in ("encoder", "decoder"):
                stats = g["groups"][group]
                row[f"snr_{group}"] = stats["snr_param"]
                row[f"var_{group}"] = stats["var_total"]
                row[f"mean_sqnorm_{group}"] = stats["mean_sqnorm"]
            rows.append(row)
            bar.update()
    bar.close()
    return rows


def plot(rows, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for ax, group in zip(axes, ("encoder", "decoder")):
        for label in ESTIMATORS:
            pts = [(r["K"], r[f"snr_{group}"]) for r in rows if r["estimator"] == label]
            ax.plot(*zip(*pts), marker="o", label=label)
        ax.set(xscale="log", yscale="log", xlabel="K (importance samples per group)",
               ylabel="SNR (mean over parameters of |E g| / sd g)", title=f"{group} gradient")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="", help="a trained run folder (default: train one)")
    parser.add_argument("--config", default="configs/mnist.toml")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the run trained first")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--draws", type=int, default=200, help="gradient draws per estimator")
    parser.add_argument("--batch", type=int, default=16, help="points in the fixed minibatch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/snr-study")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: repeatable timings on a shared machine; 0: "
                             "torch's default)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    vae, data = trained_model(args)
    xb = fixed_minibatch(data, args.batch, args.seed)
    rows = measure(vae, xb, args.ks, args.draws, args.seed)
    write_csv(out / "snr.csv", rows)
    write_json(out / "snr.json", {"settings": vars(args), "rows": rows})
    plot(rows, out / "snr.png")
    print(f"{'estimator':<15}" + "".join(f"{'K=' + str(k):>18}" for k in args.ks))
    for group in ("encoder", "decoder"):
        print(f"SNR of the {group}:")
        for label in ESTIMATORS:
            cells = [r[f"snr_{group}"] for r in rows if r["estimator"] == label]
            print(f"  {label:<13}" + "".join(f"{c:>18.4f}" for c in cells))
    print(f"written to {out}/ (snr.csv, snr.json, snr.png)")


if __name__ == "__main__":
    main()
