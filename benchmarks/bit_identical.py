"""Same seeds, same bits: train one small run of every model kind (and the main component
choices) with a checkout of pyrovae, and fingerprint what came out, so two checkouts can be
compared weight for weight (issue 29: a refactoring changes no result).

    git archive 22cf497 | tar -x -C /tmp/before
    python -m benchmarks.bit_identical --tree /tmp/before --out /tmp/before.json
    python -m benchmarks.bit_identical --out /tmp/after.json --against /tmp/before.json

Each case is ``python -m pyrovae train CONFIG`` run in the checkout's root (so its ``pyrovae``
is the one imported) on scikit-learn's 8x8 digits for 2 epochs; the fingerprint is the
sha256 of every tensor of the checkpoint (name, dtype, shape and bytes, in name order) and the
numbers of metrics.json (test ELBO, KL, bits per dimension, ...) with all their digits,
timings left out. ``--against`` compares with an earlier
fingerprint file and exits 1 on any difference, naming the case and the tensor.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMES = ("seconds", "train_samples_per_second")  # metrics.json keys that are timings

_DATA = '[data]\nname = "digits"\nbinarize = "dynamic"\ntrain_size = 512\ntest_size = 256\n'
_TRAIN = "[train]\nepochs = 2\nbatch_size = 64\nlr = 3e-3\nprogress = false\n"

#: case -> the [model] table of its config
CASES: dict[str, str] = {
    "vae": 'latent_dim = 4\nhidden = [32]\nlikelihood = "bernoulli"\n',
    "vae-mog-iaf-iwae-dreg": ('latent_dim = 4\nhidden = [32]\nelbo = "trace"\n'
                              'num_particles = 4\nposterior = "iaf"\n'
                              '[model.prior]\nname = "mog"\ncomponents = 3\n'
                              '[model.objective]\nbound = "iwae"\ngradient = "dreg"\n'),
    "vae-flow-lowrank": ('latent_dim = 4\nhidden = [32]\nelbo = "trace"\n'
                         '[model.prior]\nname = "flow"\nflow_layers = 2\nflow_type = "affine"\n'
                         '[model.posterior]\nname = "lowrank"\nrank = 2\n'),
    "vae-vamp-warmup": ('latent_dim = 4\nhidden = [32]\nelbo = "trace"\nprior = "vamp"\n'
                        '[model.kl]\nschedule = "linear"\nwarmup = 10\n'),
    "vae-logistic-conv": ('latent_dim = 4\nnetwork = "conv"\nchannels = [8]\n'
                          'likelihood = "discretized-logistic"\n'),
    "vae-gaussian-learned": ('latent_dim = 4\nhidden = [32]\nlikelihood = "gaussian-learned"\n'
                             'variance = "decoder"\n'),
    "ssvae": ('kind = "ssvae"\nlatent_dim = 4\nhidden = [32]\nclassifier = [32]\nlabels = 50\n'
              'validation = 64\nlabel_batch_size = 20\n'),
    "hvae": 'kind = "hvae"\nstochastic = [8, 4]\nhidden = [[32], [16]]\n',
    "cvae": 'kind = "cvae"\ncondition = "quadrants"\nvisible = 2\nlatent_dim = 4\nhidden = [32]\n',
    "module": ('kind = "module"\ntarget = "examples.custom_model:TwoLayerVAE"\n'
               'args = {hidden = [32, 16], latent = [8, 4]}\n'),
}


def config_text(case: str) -> str:
    """The whole config file of ``case``."""
    return f"[model]\n{CASES[case]}\n{_DATA}\n{_TRAIN}"


def fingerprint(run: Path) -> dict:
    """sha256 of every tensor in the run's checkpoint, and the numbers of metrics.json."""
    import torch

    payload = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    tensors: dict[str, str] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, torch.Tensor):
            h = hashlib.sha256(f"{value.dtype}{tuple(value.shape)}".encode())
            h.update(value.detach().contiguous().cpu().view(-1).view(torch.uint8).numpy()
                     .tobytes() if value.numel() else b"")
            tensors[prefix] = h.hexdigest()[:16]
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                walk(f"{prefix}.{key}" if prefix else str(key), value[key])
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(f"{prefix}[{i}]", item)

    for key in ("model", "train_model", "pyro_params", "train_pyro_params", "optimizer"):
        if key in payload:
            walk(key, payload[key])
    metrics = json.loads((run / "metrics.json").read_text())
    return {"tensors": tensors, "metrics": {k: repr(v) for k, v in sorted(metrics.items())
                                            if isinstance(v, (int, float)) and k not in TIMES}}


def run_case(tree: Path, case: str, work: Path) -> dict:
    config = work / f"{case}.toml"
    config.write_text(config_text(case))
    out = work / case
    cmd = [sys.executable, "-m", "pyrovae", "train", str(config), "--out", str(out), "--force"]
    done = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["(no output)"])[-1]}
    return fingerprint(out)


def differences(before: dict, after: dict) -> list[str]:
    """One line per case whose fingerprint differs (the first differing tensor or metric)."""
    lines = []
    for case in sorted(set(before) | set(after)):
        b, a = before.get(case), after.get(case)
        if b == a:
            continue
        if b is None or a is None or "error" in b or "error" in a:
            lines.append(f"{case}: before {b and b.get('error', 'ran')!s}, after "
                         f"{a and a.get('error', 'ran')!s}")
            continue
        for part in ("tensors", "metrics"):
            keys = sorted(set(b[part]) | set(a[part]))
            diff = [k for k in keys if b[part].get(k) != a[part].get(k)]
            if diff:
                lines.append(f"{case}: {part} differ ({len(diff)}), first {diff[0]}: "
                             f"{b[part].get(diff[0])} -> {a[part].get(diff[0])}")
                break
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=ROOT, help="checkout to run (default: this)")
    parser.add_argument("--out", type=Path, required=True, help="fingerprints JSON to write")
    parser.add_argument("--against", type=Path, help="earlier fingerprints to compare with")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        prints = {}
        for case in args.cases:
            prints[case] = run_case(args.tree.resolve(), case, Path(tmp))
            status = prints[case].get("error") or f"{len(prints[case]['tensors'])} tensors"
            print(f"{case:24s} {status}", flush=True)
    args.out.write_text(json.dumps(prints, indent=1, sort_keys=True))
    if args.against:
        before = json.loads(args.against.read_text())
        lines = differences({c: before.get(c) for c in prints}, prints)
        print("\n".join(lines) if lines else f"all {len(prints)} cases bit-identical")
        return 1 if lines else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
