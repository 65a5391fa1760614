"""``pyrovae compress`` and ``pyrovae decompress``: lossless coding of discrete data with a
run's VAE (bits-back ANS; docs/compression.md).

    pyrovae compress RUN_DIR INPUT -o FILE [--force] [--batch-size N] [--latent-bits K]
    pyrovae compress RUN_DIR INPUT -o FILE --lossy --step S    (the lossy latent codec)
    pyrovae decompress RUN_DIR FILE -o OUT.npy [--force]

INPUT: a .npy file (one array [N, ...]), a .npz holding one array (or one named x), or a data
spec as ``--data`` takes it (test, digits, mnist, ...: its test split as the run sees it, a
Bernoulli run's data binarized by its own static draw, as ``pyrovae evaluate`` has them).
"""

from __future__ import annotations

import io
from pathlib import Path

from pyrovae.config.fields import COUNT, POSITIVE
from pyrovae.cli.common import add_run_argument, open_run, print_result
from pyrovae.cli.options import checked, number
from pyrovae.runtime.errors import DataError


def _read_input(run, spec: str):
    """The array [N, ...] to compress: a .npy/.npz file as it is, else a data spec's x."""
    import numpy as np

    path = Path(spec)
    if path.suffix in (".npy", ".npz") and path.is_file():
        try:
            loaded = np.load(path, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                return loaded
            with loaded:
                keys = list(loaded.files)
                if len(keys) == 1 or "x" in keys:
                    return loaded["x" if "x" in keys else keys[0]]
        except (ValueError, OSError, EOFError) as err:
            raise DataError(f"cannot read '{spec}' as a NumPy file ({err}); give a .npy or "
                            f"a .npz of numbers") from None
        raise DataError(f"'{spec}' holds arrays {sorted(keys)}; give a .npz of one array "
                        f"(or one named x), or a .npy")
    from pyrovae.applications.runs import read_data

    return read_data(run, spec)[0].cpu()


def _refuse_existing(path, force: bool) -> None:
    from pyrovae.applications.compression.container import refuse_existing

    refuse_existing(path, force)


def _compress(args) -> int:
    from pyrovae.applications.compression import compress

    _refuse_existing(args.output, args.force)  # before any work: nothing is written
    run = open_run(args)
    x = _read_input(run, args.input)
    if args.lossy and args.step is None:
        raise DataError("--lossy needs --step S, the quantisation step of the latents (e.g. "
                        "--step 0.5; smaller is more bits and less distortion)")
    if args.step is not None and not args.lossy:
        raise DataError("--step sets the lossy codec's quantisation; add --lossy (the "
                        "lossless codec has no step)")
    stats = compress(run, x, args.output, latent_bits=args.latent_bits,
                     batch_size=args.batch_size, force=args.force,
                     progress=not args.no_progress, lossy_step=args.step)
    return print_result({"input": args.input, **stats})


def _decompress(args) -> int:
    import numpy as np

    from pyrovae.applications.compression import decompress
    from pyrovae.runtime.files import atomic_write

    _refuse_existing(args.output, args.force)
    run = open_run(args)
    x = decompress(run, args.file, progress=not args.no_progress).numpy()
    buffer = io.BytesIO()
    np.save(buffer, x, allow_pickle=False)
    atomic_write(args.output, buffer.getvalue())
    return print_result({"file": args.file, "output": args.output, "shape": list(x.shape),
                         "dtype": str(x.dtype)})


def add_parser(sub) -> None:
    p = sub.add_parser("compress", help="lossless compression of discrete data with the run's "
                       "VAE (bits-back ANS), or lossy (--lossy --step S)")
    add_run_argument(p)
    p.add_argument("input", metavar="INPUT",
                   help="a .npy/.npz array [N, ...], or a data spec (test, digits, mnist, ...: "
                        "its test split as the run sees it)")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="the compressed file to write")
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    p.add_argument("--batch-size", type=number("--batch-size", COUNT), default=100,
                   metavar="N", help="images coded together (default 100); decoding uses the "
                   "same batches")
    p.add_argument("--latent-bits", type=number("--latent-bits", COUNT), default=8,
                   metavar="K", help="2^K equal-mass buckets per latent dimension (default 8)")
    p.add_argument("--lossy", action="store_true", help="the lossy codec: the posterior mean "
                   "quantised with --step, coded under the prior; decompress gives E[x|z]")
    p.add_argument("--step", type=number("--step", POSITIVE), default=None, metavar="S",
                   help="--lossy: the quantisation step of the latents")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=checked(_compress))

    d = sub.add_parser("decompress", help="the data of a `pyrovae compress` file, bit for bit")
    add_run_argument(d)
    d.add_argument("file", metavar="FILE", help="a file written by `pyrovae compress`")
    d.add_argument("-o", "--output", required=True, metavar="OUT.npy",
                   help="the .npy file to write")
    d.add_argument("--force", action="store_true", help="overwrite OUT.npy if it exists")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    d.set_defaults(func=checked(_decompress))
