"""``pyrovae interpolate RUN_DIR --a I --b J``: the decoded path between the posterior means
of two test images (linear, and spherical for a Gaussian prior).

    pyrovae interpolate RUN_DIR --a I --b J [--steps 10]
"""

from __future__ import annotations

from pyrovae.applications.latent import STEPS
from pyrovae.config.fields import INTEGER
from pyrovae.cli.common import add_data_argument, add_run_argument, open_run, print_result
from pyrovae.cli.evaluate import print_data_note
from pyrovae.cli.options import checked, number


def _interpolate(args) -> int:
    from pyrovae.applications import interpolate

    run = open_run(args)
    result = interpolate(run, args.out, a=args.a, b=args.b, steps=args.steps,
                         data=args.data)
    print_data_note(result, run, args.data)
    return print_result(result, skip=("paths",))


def add_parser(sub) -> None:
    p = sub.add_parser("interpolate", help="decoded latent path between two test images")
    add_run_argument(p)
    p.add_argument("--a", type=number("--a", INTEGER), default=0,
                   help="index of the first image (default 0)")
    p.add_argument("--b", type=number("--b", INTEGER), default=1,
                   help="index of the second image (default 1)")
    p.add_argument("--steps", type=number("--steps", STEPS), default=10,
                   help="points on the path, ends included (2..100, default 10)")
    add_data_argument(p)
    p.add_argument("--out", help="output folder (default: the run folder)")
    p.set_defaults(func=checked(_interpolate))
