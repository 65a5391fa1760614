"""``pyrovae impute RUN_DIR --mask M``: fill in hidden pixels of test images from the
posterior given the visible ones; error on the hidden pixels against a mean-image baseline.

    pyrovae impute RUN_DIR --mask {center,left-half,random:0.5,...} [--n 16] [--eval-n 0]
"""

from __future__ import annotations

from pyrovae.config.fields import COUNT, SEED, SIZE
from pyrovae.cli.common import add_data_argument, add_run_argument, open_run, print_result
from pyrovae.cli.evaluate import print_data_note
from pyrovae.cli.options import checked, number


def _impute(args) -> int:
    from pyrovae.applications import impute

    run = open_run(args)
    result = impute(run, args.out, mask=args.mask, n=args.n, eval_n=args.eval_n,
                    gibbs_steps=args.gibbs_steps, num_samples=args.samples, seed=args.seed,
                    data=args.data, progress=not args.no_progress)
    print_data_note(result, run, args.data)
    return print_result(result)


def add_parser(sub) -> None:
    p = sub.add_parser("impute", help="impute hidden pixels (masked likelihood, pseudo-Gibbs, "
                       "importance resampling)")
    add_run_argument(p)
    p.add_argument("--mask", default="left-half", help="center, left-half, right-half, "
                   "top-half, bottom-half or random:P (default left-half)")
    p.add_argument("--n", type=number("--n", COUNT), default=16,
                   help="images shown (default 16; at most the first batch of 100)")
    p.add_argument("--eval-n", type=number("--eval-n", SIZE), default=0,
                   help="images scored (0 = all)")
    p.add_argument("--gibbs-steps", type=number("--gibbs-steps", SIZE), default=9,
                   help="pseudo-Gibbs steps (default 9)")
    p.add_argument("--samples", type=number("--samples", COUNT), default=200,
                   help="importance samples per image (default 200)")
    p.add_argument("--seed", type=number("--seed", SEED), default=0,
                   help="seed of masks and draws")
    add_data_argument(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", help="output folder (default: the run folder)")
    p.set_defaults(func=checked(_impute))
