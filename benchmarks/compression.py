"""Bits per dimension of the bits-back codec (pyrovae compress) against the run's -ELBO and
gzip / bz2 / lzma of the same bytes, and the codec's speed (docs/compression.md).

    python benchmarks/compression.py RUN_DIR [DATA_SPEC]      (DATA_SPEC default: test)

The general-purpose compressors get the data as one byte per value (uint8: k of k/255, or the
0/1 of binary data), their best case for these data.
"""

import bz2
import gzip
import lzma
import math
import sys
import time

import numpy as np

import pyrovae
from pyrovae.applications.compression import decode_array, encode_array
from pyrovae.applications.runs import read_data


def main(run_dir: str, spec: str = "test") -> None:
    run = pyrovae.load(run_dir)
    x = read_data(run, spec)[0].cpu().numpy()
    n, dims = len(x), x.size
    header, payload, stats = encode_array(run.model, x)
    start = time.perf_counter()
    back = decode_array(run.model, header, payload)
    decode_s = time.perf_counter() - start
    assert np.array_equal(back, x), "the round trip is not bit-exact"
    levels = 1 if run.model.likelihood.name == "bernoulli" else 255
    raw = np.round(x * levels).astype(np.uint8).tobytes()
    rows = [("bits-back ANS (file, all words)", stats["bits_per_dim"]),
            ("bits-back ANS (net of initial words)", stats["net_bits_per_dim"]),
            ("-ELBO of the run (test)", -run.metrics["test_elbo"] / math.log(2) / x.shape[1]),
            ("gzip -9", 8 * len(gzip.compress(raw, 9)) / dims),
            ("bz2 -9", 8 * len(bz2.compress(raw, 9)) / dims),
            ("lzma -9", 8 * len(lzma.compress(raw, preset=9)) / dims)]
    print(f"{run_dir} on {spec}: {n} images x {x.shape[1]} values")
    print("| method | bits/dim |\n|---|---|")
    for name, bpd in rows:
        print(f"| {name} | {bpd:.4f} |")
    print(f"encode {stats['images_per_second']:.0f} images/s, "
          f"decode {n / decode_s:.0f} images/s")


if __name__ == "__main__":
    main(*sys.argv[1:])
