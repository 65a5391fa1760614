"""Rate-distortion of the lossy latent codec (pyrovae/applications/compression/lossy.py)
against JPEG and WebP (Pillow), on the same test images.

    python -m benchmarks.rate_distortion                       # digits: trains 3 beta-VAEs
    python -m benchmarks.rate_distortion runs/a runs/b         # given runs, their test data
    python -m benchmarks.rate_distortion --data mnist --count 1000 --epochs 10

Each VAE point: step S -> k = round(mu(x) / S) coded under the discretised N(0, I) prior,
x_hat = E[x | z = k S] clipped to [0, 1]; rate = coded bits / pixels (bpp; the decoder's
weights are shared, not counted). Each JPEG / WebP point: every test image saved as its own
greyscale file at a quality q, bpp = 8 * total bytes / pixels. Distortion: PSNR = 10 log10(1 /
MSE) over all test pixels (data in [0, 1]), and the mean SSIM (7x7 Gaussian window, own
implementation: pyrovae/applications/compression/quality.py).

Headers dominate on 8 x 8 digits: a greyscale JPEG file (Pillow, optimize=True) carries ~160
bytes of markers and Huffman/quantisation tables for 64 pixels (~20 bpp), a WebP file 20 bytes
of RIFF/chunk headers (2.5 bpp) beside its VP8 frame header.
So three rows per codec and quality:
    jpeg / webp                  whole files (what a per-image store pays)
    jpeg-payload / webp-payload  JPEG: only the entropy-coded scan (SOS data up to EOI);
                                 WebP: only the VP8 chunk's data (RIFF and chunk headers off;
                                 the VP8 frame header stays). Tables and headers shared by all
                                 images are assumed known to the receiver; a real JPEG with
                                 "abbreviated" shared tables is not what Pillow writes.
    jpeg-mosaic / webp-mosaic    all test images tiled in one image and saved as one file:
                                 headers amortised, but blocks (for 8 x 8 digits exactly one
                                 JPEG block each) see their neighbours.
The MNIST-scale run (28 x 28, where headers matter less) is ``--data mnist`` (offline via
``pyrovae.load_dataset("mnist")``). Writes points.csv, points.json and rate_distortion.png to
--out (default runs/rate_distortion) and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import struct
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import pyrovae
from pyrovae import KLConfig, VAEConfig
from pyrovae.config import LikelihoodConfig
from pyrovae.applications.compression.lossy import decode_latents, encode_latents
from pyrovae.applications.compression.quality import psnr, ssim

STEPS = (0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
QUALITIES = (1, 2, 3, 5, 10, 25, 50, 75, 90, 95)
BETAS = (0.25, 1.0, 4.0)


def jpeg_scan_bytes(blob: bytes) -> int:
    """Bytes of the entropy-coded data: after the SOS segment's header, up to EOI."""
    i = 2
    while i < len(blob):
        marker, length = blob[i + 1], struct.unpack(">H", blob[i + 2:i + 4])[0]
        if marker == 0xDA:  # start of scan: data follows its header, up to FFD9
            return len(blob) - (i + 2 + length) - 2
        i += 2 + length
    raise ValueError("no SOS marker")


def webp_payload_bytes(blob: bytes) -> int:
    """Bytes of the 'VP8 ' (or 'VP8L') chunks' data, without RIFF and chunk headers."""
    total, i = 0, 12
    while i + 8 <= len(blob):
        tag, size = blob[i:i + 4], struct.unpack("<I", blob[i + 4:i + 8])[0]
        if tag in (b"VP8 ", b"VP8L"):
            total += size
        i += 8 + size + (size & 1)
    return total


def codec_round_trip(images: np.ndarray, fmt: str, quality: int):
    """images uint8 [N, H, W] -> (decoded float [N, H, W] in [0, 1], bytes, payload bytes)."""
    out, size, payload = [], 0, 0
    for img in images:
        buf = io.BytesIO()
        options = {"method": 6} if fmt == "WEBP" else {"optimize": True}
        Image.fromarray(img, "L").save(buf, fmt, quality=quality, **options)
        blob = buf.getvalue()
        size += len(blob)
        payload += jpeg_scan_bytes(blob) if fmt == "JPEG" else webp_payload_bytes(blob)
        out.append(np.asarray(Image.open(io.BytesIO(blob)).convert("L"), dtype=np.float64))
    return np.stack(out) / 255.0, size, payload


def mosaic(images: np.ndarray) -> tuple[np.ndarray, int]:
    """Tile [N, H, W] row-major into one [rows H, cols W] image (blank padding), and cols."""
    n, h, w = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    canvas = np.zeros((rows * h, cols * w), dtype=images.dtype)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        canvas[r * h:(r + 1) * h, c * w:(c + 1) * w] = img
    return canvas, cols


def untile(canvas: np.ndarray, n: int, h: int, w: int, cols: int) -> np.ndarray:
    return np.stack([canvas[(i // cols) * h:(i // cols + 1) * h, (i % cols) * w:(i % cols + 1) * w]
                     for i in range(n)])


def point(codec, setting, bits, x, x_hat, shape):
    pixels = x.shape[0] * x.shape[1]
    return {"codec": codec, "setting": setting, "bpp": bits / pixels,
            "psnr": psnr(x, x_hat), "ssim": ssim(x, x_hat, shape)}


def image_codecs(x: torch.Tensor, shape, qualities) -> list[dict]:
    """JPEG and WebP points (whole files, payloads, mosaics) for x [N, H*W] in [0, 1]."""
    h, w = shape
    imgs = np.clip(np.round(x.numpy().reshape(-1, h, w) * 255), 0, 255).astype(np.uint8)
    flat = x.double()
    rows = []
    for fmt in ("JPEG", "WEBP"):
        name = fmt.lower()
        for q in qualities:
            dec, size, payload = codec_round_trip(imgs, fmt, q)
            dec = torch.from_numpy(dec.reshape(len(imgs), -1))
            rows.append(point(name, q, 8 * size, flat, dec, shape))
            rows.append(point(f"{name}-payload", q, 8 * payload, flat, dec, shape))
            canvas, cols = mosaic(imgs)
            dec, size, _ = codec_round_trip(canvas[None], fmt, q)
            dec = untile(dec[0], len(imgs), h, w, cols).reshape(len(imgs), -1)
            rows.append(point(f"{name}-mosaic", q, 8 * size, flat, torch.from_numpy(dec), shape))
    return rows


def vae_points(label: str, model, x: torch.Tensor, shape, steps) -> list[dict]:
    rows = []
    for step in steps:
        words, stats = encode_latents(model, x, step, batch_size=512)
        x_hat = decode_latents(model, words, step, stats.count, stats.latent_dim, 512)
        row = point(label, step, stats.bits, x.double(), x_hat.clamp(0, 1).double(), shape)
        row["ideal_bpp"] = stats.ideal_bits / (stats.count * stats.input_dim)
        rows.append(row)
    with torch.no_grad():  # the unquantised ceiling: z = mu, infinite rate
        rows.append(point(label, "none", math.inf, x.double(),
                          model.reconstruct(x).clamp(0, 1).double(), shape))
    return rows


def train_runs(args, data) -> dict:
    runs = {}
    for beta in args.betas:
        cfg = VAEConfig(latent_dim=args.latent, hidden=tuple(args.hidden),
                        likelihood=LikelihoodConfig("gaussian", sigma=args.sigma),
                        kl=KLConfig(beta=beta))
        out = Path(args.out) / "runs" / f"beta{beta:g}"
        t = time.time()
        runs[f"vae beta={beta:g}"] = pyrovae.train(cfg, data, out=out, force=True,
                                                   epochs=args.epochs, lr=args.lr, seed=0,
                                                   progress=False)
        print(f"trained beta={beta:g} in {time.time() - t:.1f} s -> {out}")
    return runs


def plot(rows, path: Path, title: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5))
    for codec in dict.fromkeys(r["codec"] for r in rows):
        pts = sorted((r["bpp"], r["psnr"]) for r in rows
                     if r["codec"] == codec and math.isfinite(r["bpp"]))
        style = "-o" if codec.startswith("vae") else ("--s" if "jpeg" in codec else ":^")
        ax.plot(*zip(*pts), style, label=codec, markersize=4)
    ax.set_xscale("log")
    ax.set_xlabel("rate (bits per pixel, log scale)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="*", help="run folders (default: train beta-VAEs)")
    p.add_argument("--data", default="digits", help="data set when training (digits, mnist)")
    p.add_argument("--count", type=int, default=0, help="first COUNT test images (0: all)")
    p.add_argument("--betas", type=float, nargs="+", default=BETAS)
    p.add_argument("--latent", type=int, default=12)
    p.add_argument("--hidden", type=int, nargs="+", default=[128])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--sigma", type=float, default=0.1, help="Gaussian likelihood's sigma")
    p.add_argument("--steps", type=float, nargs="+", default=STEPS)
    p.add_argument("--qualities", type=int, nargs="+", default=QUALITIES)
    p.add_argument("--out", default="runs/rate_distortion")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    if args.runs:
        runs = {Path(r).name: pyrovae.load(r) for r in args.runs}
        data = pyrovae.load_dataset(next(iter(runs.values())).config.data)
    else:
        data = pyrovae.load_dataset(args.data)
        runs = train_runs(args, data)
    x = data.test_x[:args.count or None].float()
    shape = tuple(data.shape[-2:])
    rows = []
    for label, run in runs.items():
        rows += vae_points(label, run.model, x, shape, args.steps)
    rows += image_codecs(x, shape, args.qualities)
    keys = ["codec", "setting", "bpp", "psnr", "ssim", "ideal_bpp"]
    with open(out / "points.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, keys)
        writer.writeheader()
        writer.writerows(rows)
    meta = {"data": data.name, "test_images": int(x.shape[0]), "shape": shape,
            "runs": {k: str(r.path) for k, r in runs.items()}, "points": rows}
    (out / "points.json").write_text(json.dumps(meta, indent=1, default=str))
    plot(rows, out / "rate_distortion.png",
         f"{data.name}: {x.shape[0]} test images of {shape[0]}x{shape[1]}")
    print(f"{'codec':18s} {'setting':>8s} {'bpp':>9s} {'PSNR dB':>8s} {'SSIM':>6s}")
    for r in rows:
        print(f"{r['codec']:18s} {str(r['setting']):>8s} {r['bpp']:9.3f} {r['psnr']:8.2f} "
              f"{r['ssim']:6.3f}")
    print(f"wrote {out / 'points.csv'}, points.json, rate_distortion.png")


if __name__ == "__main__":
    main()
