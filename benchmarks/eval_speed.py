"""Evaluation speed and memory: the importance-sampled test NLL with K samples per image.

    python -m benchmarks.eval_speed [--run runs/mnist] [--num-test 10000] [--k 5000]

For the VAE of a run folder (default: a freshly initialised 784-400-50 MNIST VAE), computes
-log p(x) ~= -log (1/K) sum_k p(x, z_k) / q(z_k|x) over the first ``--num-test`` test images,
twice, each in its own subprocess so its peak resident memory is its own:

    pyrovae      pyrovae.evaluation.log_likelihood: Pyro traces under a particle plate,
                 chunked over K with a running log-sum-exp
    handwritten  the same estimator written directly in torch (encoder once, reparameterised
                 draws, decoder, Bernoulli/Normal log-densities), chunked the same way

and prints seconds, images/s, peak RSS (MiB) and the ratio of times; writes JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F


def _load(run: str | None):
    from pyrovae import VAE, VAEConfig, load, load_dataset

    data = load_dataset("mnist", binarize="dynamic")
    if run:
        vae = load(run).vae
    else:
        torch.manual_seed(0)
        vae = VAE(VAEConfig(), data.shape)
    return vae.eval(), data.test_data()


@torch.no_grad()
def handwritten_nll(vae, x, k: int, batch: int = 100, chunk: int = 500) -> torch.Tensor:
    """-log p(x) for a Gaussian-encoder, N(0, I)-prior, Bernoulli-decoder VAE, by hand."""
    enc, dec = vae.encoder, vae.decoder
    out = []
    for start in range(0, len(x), batch):
        xb = x[start:start + batch]
        loc, scale = enc(xb)
        lse = torch.full((len(xb),), -math.inf, dtype=torch.float64)
        for done in range(0, k, chunk):
            kk = min(chunk, k - done)
            eps = torch.randn(kk, *loc.shape)
            z = loc + scale * eps
            logits = dec(z)
            log_px_z = -F.binary_cross_entropy_with_logits(
                logits, xb.expand_as(logits), reduction="none").sum(-1)
            log_pz = -0.5 * (z ** 2).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
            log_qz = (-0.5 * eps ** 2 - scale.log()).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
            lse = torch.logaddexp(lse, torch.logsumexp((log_px_z + log_pz - log_qz).double(), 0))
        out.append(-(lse - math.log(k)))
    return torch.cat(out)


def _worker(args) -> dict:
    from pyrovae.evaluation import log_likelihood

    vae, x = _load(args.run)
    x = x[:args.num_test]
    torch.manual_seed(0)
    start = time.perf_counter()
    if args.worker == "pyrovae":
        nll = -log_likelihood(vae, x, num_samples=args.k, batch_size=100, progress=True)
    else:
        nll = handwritten_nll(vae, x, args.k)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"estimator": args.worker, "seconds": seconds, "images_per_s": len(x) / seconds,
            "peak_rss_mib": peak_mib, "test_nll": float(nll.mean()),
            "test_nll_se": float(nll.std() / math.sqrt(len(nll)))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="run folder of an MNIST VAE (default: untrained VAE)")
    parser.add_argument("--num-test", type=int, default=10000)
    parser.add_argument("--k", type=int, default=5000)
    parser.add_argument("--out", default="benchmarks/results/eval_speed.json")
    parser.add_argument("--worker", choices=["pyrovae", "handwritten"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args)))
        return
    results = []
    for worker in ("handwritten", "pyrovae"):
        cmd = [sys.executable, "-m", "benchmarks.eval_speed", "--worker", worker,
               "--num-test", str(args.num_test), "--k", str(args.k)]
        if args.run:
            cmd += ["--run", args.run]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    hand, ours = results
    report = {"k": args.k, "num_test": args.num_test, "run": args.run, "results": results,
              "time_ratio_pyrovae_over_handwritten": ours["seconds"] / hand["seconds"],
              "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
              "python": platform.python_version()}
    print(f"K={args.k}, {args.num_test} test images")
    print("| estimator | seconds | images/s | peak RSS (MiB) | test NLL |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['estimator']} | {r['seconds']:.1f} | {r['images_per_s']:.1f} | "
              f"{r['peak_rss_mib']:.0f} | {r['test_nll']:.2f} +- {r['test_nll_se']:.2f} |")
    print(f"time ratio pyrovae / handwritten: {report['time_ratio_pyrovae_over_handwritten']:.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
