"""``pyrovae reconstruct RUN_DIR``: test images beside their reconstructions, and the mean
reconstruction error over the test set.

    pyrovae reconstruct RUN_DIR [--n 16] [--data test]
"""

from __future__ import annotations

from pyrovae.config.fields import COUNT
from pyrovae.cli.common import add_data_argument, add_run_argument, open_run, print_result
from pyrovae.cli.evaluate import print_data_note
from pyrovae.cli.options import checked, number


def _reconstruct(args) -> int:
    from pyrovae.applications import reconstruct

    run = open_run(args)
    result = reconstruct(run, args.out, n=args.n, data=args.data)
    print_data_note(result, run, args.data)
    return print_result(result)


def add_parser(sub) -> None:
    p = sub.add_parser("reconstruct", help="originals beside reconstructions; mean error")
    add_run_argument(p)
    p.add_argument("--n", type=number("--n", COUNT), default=16,
                   help="images shown (default 16; at most 512 beside their reconstructions)")
    add_data_argument(p)
    p.add_argument("--out", help="output folder (default: the run folder)")
    p.set_defaults(func=checked(_reconstruct))
