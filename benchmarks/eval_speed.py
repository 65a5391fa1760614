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

With ``--priors``, the cost of the prior instead, in one process, interleaved over ``--reps``:

    python -m benchmarks.eval_speed --priors normal,mog,vamp [--points 200] [--nll-samples 500]
                                    [--components 500] [--reps 3] [--threads N]

For each prior, the same freshly initialised 784-400-50 MNIST VAE (seed 0; the vamp
pseudo-inputs set from training rows, as training does) with that prior: the seconds of
``log_likelihood`` (K = ``--nll-samples`` per point, batches of 100, the same chunks over K as
pyrovae's) and the seconds of the decoder alone on K draws z ~ q(z|x) per point in the same
chunks, the floor of any importance-sampled evaluation; their ratio (IS / decoder) is what a
prior adds. Medians over the reps; writes benchmarks/results/eval_speed_priors.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
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


# ---- --priors: the importance-sampled NLL against the decoder alone, per prior -------------

def prior_vae(data, prior: str, components: int):
    """The 784-400-50 VAE (seed 0) with ``prior``; vamp's pseudo-inputs from training rows."""
    from pyrovae import VAE, VAEConfig

    torch.manual_seed(0)
    spec = {"name": prior} if prior in ("normal", "learnable-normal") else \
        {"name": prior, "components": components}
    vae = VAE(VAEConfig(prior=spec, elbo="trace"), data.shape).eval()
    if hasattr(vae.prior, "init_from_data"):
        vae.prior.init_from_data(data.train_x, torch.Generator().manual_seed(0))
    return vae


def draws_in_chunks(vae, x: torch.Tensor, k: int, batch: int) -> list[torch.Tensor]:
    """k draws z ~ q(z|x) [chunk, b, L] per row of x, cut as ``reduce_log_weights`` cuts its
    work: batches of ``batch`` rows, chunks over k from ``chunk_size``."""
    from pyrovae.evaluation.likelihood import chunk_size
    from pyrovae.runtime.rng import seeded

    chunks = []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            xb = x[start:start + batch]
            with seeded(0):
                chunk = chunk_size(vae, xb, 512 * 2**20)
            loc, scale = vae.encoder(xb)
            for done in range(0, k, chunk):
                kk = min(chunk, k - done)
                chunks.append(loc + scale * torch.randn(kk, *loc.shape))
    return chunks


def time_priors(args) -> dict:
    from pyrovae import load_dataset
    from pyrovae.evaluation import log_likelihood

    data = load_dataset("mnist", binarize="dynamic")
    x = data.test_data()[:args.points]
    priors = args.priors.split(",")
    vaes = {p: prior_vae(data, p, args.components) for p in priors}
    draws = {p: draws_in_chunks(vaes[p], x, args.nll_samples, 100) for p in priors}
    times = {p: {"is": [], "decoder": []} for p in priors}
    nll = {}
    for rep in range(args.reps):
        for p in priors[rep % len(priors):] + priors[:rep % len(priors)]:
            start = time.perf_counter()
            ll = log_likelihood(vaes[p], x, num_samples=args.nll_samples, batch_size=100)
            times[p]["is"].append(time.perf_counter() - start)
            nll[p] = float(-ll.mean())
            start = time.perf_counter()
            with torch.no_grad():
                for z in draws[p]:
                    vaes[p].decoder(z)
            times[p]["decoder"].append(time.perf_counter() - start)
        print(f"  rep {rep + 1}/{args.reps}: " + ", ".join(
            f"{p} IS {times[p]['is'][-1]:.2f} s / decoder {times[p]['decoder'][-1]:.2f} s"
            for p in priors), flush=True)
    rows = []
    for p in priors:
        is_s, dec_s = statistics.median(times[p]["is"]), statistics.median(times[p]["decoder"])
        rows.append({"prior": p, "components": None if p == "normal" else args.components,
                     "prior_distribution": type(vaes[p].prior()).__name__,
                     "is_seconds": is_s, "decoder_seconds": dec_s, "ratio": is_s / dec_s,
                     "test_nll": nll[p], "raw": times[p]})
    return {"points": args.points, "nll_samples": args.nll_samples, "reps": args.reps,
            "results": rows, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            / 1024, "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "load_average_at_end": list(os.getloadavg())}


def main_priors(args) -> None:
    report = time_priors(args)
    print(f"K={args.nll_samples} draws x {args.points} MNIST test points, median of "
          f"{args.reps}")
    print("| prior | p(z) | IS seconds | decoder seconds | IS / decoder | NLL (untrained) |")
    print("|---|---|---|---|---|---|")
    for r in report["results"]:
        name = r["prior"] + (f" ({r['components']})" if r["components"] else "")
        print(f"| {name} | {r['prior_distribution']} | {r['is_seconds']:.2f} | "
              f"{r['decoder_seconds']:.2f} | {r['ratio']:.2f} | {r['test_nll']:.2f} |")
    out = args.out or "benchmarks/results/eval_speed_priors.json"
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=2) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="run folder of an MNIST VAE (default: untrained VAE)")
    parser.add_argument("--num-test", type=int, default=10000)
    parser.add_argument("--k", type=int, default=5000)
    parser.add_argument("--out", default=None, help="JSON file (default: "
                        "benchmarks/results/eval_speed.json, or eval_speed_priors.json)")
    parser.add_argument("--priors", help="comma-separated priors: time IS against the decoder")
    parser.add_argument("--points", type=int, default=200, help="--priors: test points")
    parser.add_argument("--nll-samples", type=int, default=500, help="--priors: K per point")
    parser.add_argument("--components", type=int, default=500,
                        help="--priors: mog components / vamp pseudo-inputs")
    parser.add_argument("--reps", type=int, default=3, help="--priors: repetitions")
    parser.add_argument("--threads", type=int, default=0,
                        help="--priors: torch threads (default: torch's own choice)")
    parser.add_argument("--worker", choices=["pyrovae", "handwritten"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.priors:
        if args.threads:
            torch.set_num_threads(args.threads)
        main_priors(args)
        return
    args.out = args.out or "benchmarks/results/eval_speed.json"
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
