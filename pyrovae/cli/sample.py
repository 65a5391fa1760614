"""``pyrovae sample RUN_DIR``: a PNG grid of decoded prior draws (and their numbers).

    pyrovae sample RUN_DIR [--n 64] [--temperature T] [--mode mean|sample] [--save-npy]
    pyrovae sample RUN_DIR --by-class [COLUMNS]     (runs whose kind declares a by-class
                                       picture: semi-supervised runs)
    pyrovae sample RUN_DIR --condition C [--data SPEC]  (models that draw given a condition:
                                       a class, or the index of an example; docs/conditional.md)
"""

from __future__ import annotations

from pyrovae.config.fields import COUNT, POSITIVE, SEED
from pyrovae.runtime.interface import has, takes_condition
from pyrovae.applications.generation import COLUMNS
from pyrovae.cli.common import add_data_argument, add_run_argument, open_run, print_result
from pyrovae.cli.options import checked, number


def _sample(args) -> int:
    from pyrovae.applications import sample
    from pyrovae.applications.generation import by_class

    run = open_run(args)
    if args.condition is not None:
        return print_result(sample(run, args.out, n=args.n, temperature=args.temperature,
                                   mode=args.mode, seed=args.seed, save_npy=args.save_npy,
                                   condition=args.condition, data=args.data))
    # a model whose decoder needs a condition its sample() cannot take draws by class: the
    # picture its kind declares (docs/ssvae.md), refused in one line for a kind without one
    if args.by_class is not None or (has(run.model, "condition")
                                     and not takes_condition(run.model)):
        columns = 10 if args.by_class is None else args.by_class
        return print_result(by_class(run, args.out, columns, args.seed))

    result = sample(run, args.out, n=args.n, temperature=args.temperature,
                    mode=args.mode, seed=args.seed, save_npy=args.save_npy)
    return print_result(result)


def add_parser(sub) -> None:
    p = sub.add_parser("sample", help="decode draws from the prior p(z) into a PNG grid")
    add_run_argument(p)
    p.add_argument("--n", type=number("--n", COUNT), default=64,
                   help="number of draws (default 64); sample.png shows the first 1024, "
                        "sample.npy holds all")
    p.add_argument("--temperature", type=number("--temperature", POSITIVE), default=1.0,
                   help="spread of z about the prior's mean, 1 = the prior (default 1)")
    p.add_argument("--mode", choices=("mean", "sample"), default="mean",
                   help="show E[x|z] (mean, default) or a draw x ~ p(x|z) (sample)")
    p.add_argument("--seed", type=number("--seed", SEED), default=0,
                   help="seed of the draws (default 0)")
    p.add_argument("--save-npy", action="store_true", help="also write sample.npy")
    p.add_argument("--by-class", type=number("--by-class", COLUMNS), nargs="?", const=10,
                   metavar="COLUMNS",
                   help="semi-supervised runs (their default): by_class.png, one row per "
                        "class, the style z shared down each of COLUMNS columns (default 10)")
    p.add_argument("--condition", metavar="C",
                   help="draw given a condition, for models that take one: a class (a "
                        "label-conditioned CVAE), or the index of an example of --data whose "
                        "visible quadrants are completed (a quadrant-conditioned CVAE)")
    add_data_argument(p)
    p.add_argument("--out", help="output folder (default: the run folder)")
    p.set_defaults(func=checked(_sample))
