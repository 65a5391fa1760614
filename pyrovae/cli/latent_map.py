"""``pyrovae latent-map RUN_DIR``: test posterior means in 2-D coloured by label, and for a
2-D latent the decoded manifold.

    pyrovae latent-map RUN_DIR [--projection pca|kl] [--n 0] [--grid 20]
"""

from __future__ import annotations

from pyrovae.applications.latent import GRID
from pyrovae.config.fields import SIZE
from pyrovae.cli.common import add_data_argument, add_run_argument, open_run, print_result
from pyrovae.cli.evaluate import print_data_note
from pyrovae.cli.options import checked, number


def _latent_map(args) -> int:
    from pyrovae.applications import latent_map

    run = open_run(args)
    result = latent_map(run, args.out, projection=args.projection, n=args.n,
                        grid=args.grid, data=args.data)
    print_data_note(result, run, args.data)
    return print_result(result)


def add_parser(sub) -> None:
    p = sub.add_parser("latent-map", help="2-D map of posterior means (and decoded manifold)")
    add_run_argument(p)
    p.add_argument("--projection", choices=("pca", "kl"), default="pca",
                   help="for latent_dim > 2: PCA (default) or the two top-KL dimensions")
    p.add_argument("--n", type=number("--n", SIZE), default=0,
                   help="use the first N examples (0 = all)")
    p.add_argument("--grid", type=number("--grid", GRID), default=20,
                   help="manifold grid size for latent_dim 2 (1..100, default 20)")
    add_data_argument(p)
    p.add_argument("--out", help="output folder (default: the run folder)")
    p.set_defaults(func=checked(_latent_map))
