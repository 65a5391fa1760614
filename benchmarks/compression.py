"""Bits per dimension of the bits-back codec (pyrovae compress) against the run's -ELBO and
gzip / bz2 / lzma of the same bytes, and the codec's speed (docs/compression.md).

    python benchmarks/compression.py RUN_DIR [DATA_SPEC [NLL_SAMPLES]] [--count N]
                                     [--latent-bits K] [--grid aggregate|normal]
        DATA_SPEC default test; NLL_SAMPLES > 0 adds the importance-sampled -log p(x) with that
        many draws per image (the limit of the model; bits-back reaches the -ELBO); --count N
        codes the first N images only; --grid: a hierarchy's latent grid (Bit-Swap), equal
        mass under each layer's aggregate posterior estimated from the run's training split
        (the default, as ``pyrovae compress``), or the N(0, 1) buckets of format 1

The general-purpose compressors get the data as one byte per value (uint8: k of k/255, or the
0/1 of binary data), their best case for these data; PNG (Pillow, optimize=True) gets each
image as a 1-bit (binary data) or 8-bit greyscale file, and all of them tiled into one mosaic
(one header for the set). The initial words of bits-back are a one-off cost: the "net" row
is the rate on a long stream.
"""

import argparse
import bz2
import gzip
import io
import lzma
import math
import sys
import time

import numpy as np

import pyrovae
from pyrovae.applications.compression import decode_array, encode_array
from pyrovae.applications.runs import read_data


def png_bits(images: np.ndarray, binary: bool) -> tuple[int, int]:
    """(bits of one PNG per image, bits of one PNG mosaic of all) for images [N, H, W] uint8."""
    from PIL import Image

    def size(a: np.ndarray) -> int:
        img = Image.fromarray(a * 255 if binary else a).convert("1" if binary else "L")
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=True)
        return 8 * buf.tell()

    n, h, w = images.shape
    cols = int(math.ceil(math.sqrt(n)))
    mosaic = np.zeros((int(math.ceil(n / cols)) * h, cols * w), np.uint8)
    for i, im in enumerate(images):
        mosaic[(i // cols) * h:(i // cols + 1) * h, (i % cols) * w:(i % cols + 1) * w] = im
    return sum(size(im) for im in images), size(mosaic)


def elbo_of(run, x: np.ndarray) -> float:
    """The run's ELBO in nats per image, averaged over the images x [N, ...]."""
    import torch

    from pyrovae.evaluation import evaluate_elbo

    flat = torch.as_tensor(x.reshape(len(x), -1), dtype=torch.float32)
    return evaluate_elbo(run.model, flat)["elbo"]


def main(run_dir: str, spec: str = "test", nll_samples: str = "0", count: int = 0,
         latent_bits: int = 8, grid: str = "aggregate") -> None:
    run = pyrovae.load(run_dir)
    x = read_data(run, spec)[0].cpu().numpy()
    x = x[:count] if count > 0 else x
    n, dims = len(x), x.size
    hierarchy = getattr(run.model, "latent_sizes", None) is not None
    grid_x = read_data(run, "train")[0] if hierarchy and grid == "aggregate" else None
    header, payload, stats = encode_array(run.model, x, latent_bits, grid_x=grid_x, grid=grid)
    start = time.perf_counter()
    back = decode_array(run.model, header, payload)
    decode_s = time.perf_counter() - start
    assert np.array_equal(back, x), "the round trip is not bit-exact"
    levels = 1 if run.model.likelihood.name == "bernoulli" else 255
    per_image = dims // n
    ints = np.round(x * levels).astype(np.uint8) if x.dtype.kind == "f" else x.astype(np.uint8)
    raw = ints.tobytes()
    side = int(math.isqrt(per_image))
    pngs = png_bits(ints.reshape(n, side, side), levels == 1) if side * side == per_image else None
    rows = [("bits-back ANS (file, all words)", stats["bits_per_dim"]),
            ("bits-back ANS (the whole file: header, grid, checksum)",
             stats["file_bits_per_dim"]),
            ("bits-back ANS (net of initial words)", stats["net_bits_per_dim"]),
            ("bits-back ANS (ideal: the coded information)", stats["ideal_bits_per_dim"]),
            ("-ELBO of the run (test)", -run.metrics["test_elbo"] / math.log(2) / per_image),
            (f"-ELBO of the run on these {n} images (one draw each, seed 0)",
             -elbo_of(run, x) / math.log(2) / per_image),
            ("gzip -9", 8 * len(gzip.compress(raw, 9)) / dims),
            ("bz2 -9", 8 * len(bz2.compress(raw, 9)) / dims),
            ("lzma -9", 8 * len(lzma.compress(raw, preset=9)) / dims)]
    if int(nll_samples) > 0:
        import torch

        from pyrovae.evaluation import log_likelihood

        flat = torch.as_tensor(x.reshape(n, per_image), dtype=torch.float32)
        nll = -float(log_likelihood(run.model, flat, num_samples=int(nll_samples)).mean())
        rows.insert(3, (f"IS -log p(x) of the run (K = {nll_samples})",
                        nll / math.log(2) / per_image))
    if pngs is not None:
        rows += [("PNG, one file per image", pngs[0] / dims), ("PNG, one mosaic", pngs[1] / dims)]
    print(f"{run_dir} on {spec}: {n} images x {per_image} values, latent_bits {latent_bits}"
          + (f", grid {grid} ({stats['grid_bits'] // 8} bytes, estimated in "
             f"{stats['grid_seconds']:.1f} s)" if hierarchy else ""))
    print("| method | bits/dim |\n|---|---|")
    for name, bpd in rows:
        print(f"| {name} | {bpd:.4f} |")
    print(f"encode {stats['images_per_second']:.0f} images/s, "
          f"decode {n / decode_s:.0f} images/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("spec", nargs="?", default="test")
    parser.add_argument("nll_samples", nargs="?", default="0")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--latent-bits", type=int, default=8)
    parser.add_argument("--grid", choices=("aggregate", "normal"), default="aggregate")
    args = parser.parse_args(sys.argv[1:])
    main(args.run_dir, args.spec, args.nll_samples, args.count, args.latent_bits, args.grid)
