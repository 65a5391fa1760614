"""``pyrovae traverse RUN_DIR``: one row per latent dimension, varied around a posterior
mean (dimensions ordered by their KL).

    pyrovae traverse RUN_DIR [--dims 0 3 7] [--range 3] [--steps 9] [--index 0] [--top 10]
"""

from __future__ import annotations

from pyrovae.applications.latent import ROWS, STEPS
from pyrovae.config.fields import INTEGER, POSITIVE, SIZE
from pyrovae.cli.common import add_data_argument, add_run_argument, open_run, print_result
from pyrovae.cli.evaluate import print_data_note
from pyrovae.cli.options import checked, number


def _traverse(args) -> int:
    from pyrovae.applications import traverse

    run = open_run(args)
    result = traverse(run, args.out, dims=args.dims, span=args.range,
                      steps=args.steps, index=args.index, top=args.top, data=args.data)
    print_data_note(result, run, args.data)
    return print_result(result, skip=("ranking",))


def add_parser(sub) -> None:
    p = sub.add_parser("traverse", help="latent traversals, one row per dimension")
    add_run_argument(p)
    p.add_argument("--dims", type=number("--dims", SIZE), nargs="+", help="dimensions to show "
                   "(default: the --top ones by KL; at most 100)")
    p.add_argument("--top", type=number("--top", ROWS), default=10,
                   help="rows when --dims is not given (1..100, default 10)")
    p.add_argument("--range", type=number("--range", POSITIVE), default=3.0,
                   help="offsets -R..R in prior standard deviations (default 3)")
    p.add_argument("--steps", type=number("--steps", STEPS), default=9,
                   help="columns per row (2..100, default 9)")
    p.add_argument("--index", type=number("--index", INTEGER), default=0,
                   help="image whose posterior mean is varied")
    add_data_argument(p)
    p.add_argument("--out", help="output folder (default: the run folder)")
    p.set_defaults(func=checked(_traverse))
