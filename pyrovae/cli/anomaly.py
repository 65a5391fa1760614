"""``pyrovae anomaly RUN_DIR``: per-example anomaly scores (CSV), a histogram of normal vs
anomalous scores (PNG) and the AUROC when labels say which examples are anomalous.

    pyrovae anomaly RUN_DIR [--data test:all] [--score elbo|nll|ratio|latent] [--labels-anomalous 9]
"""

from __future__ import annotations

from pyrovae.config.fields import COUNT, SEED, SIZE
from pyrovae.cli.common import add_data_argument, add_run_argument, open_run, print_result
from pyrovae.cli.evaluate import print_data_note
from pyrovae.cli.options import checked, number


def _anomaly(args) -> int:
    from pyrovae.applications import anomaly

    run = open_run(args)
    result = anomaly(run, args.out, data=args.data, score=args.score,
                     labels_anomalous=args.labels_anomalous, num_samples=args.samples,
                     seed=args.seed, progress=not args.no_progress,
                     neighbours=args.neighbours)
    print_data_note(result, run, args.data)
    return print_result(result)


def add_parser(sub) -> None:
    p = sub.add_parser("anomaly", help="anomaly scores (-ELBO, -log p(x), ratio, latent) and AUROC")
    add_run_argument(p)
    add_data_argument(p, default="test:all")
    p.add_argument("--score", choices=("elbo", "nll", "ratio", "latent"), default="elbo",
                   help="-ELBO (default), importance-sampled -log p(x), -ELBO against an "
                   "independent-pixel background model (ratio), or the distance of E_q[z|x] "
                   "from the training codes (latent)")
    p.add_argument("--samples", type=number("--samples", COUNT),
                   help="z draws per example (default 10 for elbo and ratio, 200 for nll)")
    p.add_argument("--neighbours", type=number("--neighbours", COUNT), default=1, metavar="K",
                   help="latent: distance to the K-th nearest training code (default 1)")
    p.add_argument("--labels-anomalous", type=number("--labels-anomalous", SIZE), nargs="+",
                   metavar="LABEL",
                   help="labels that count as anomalous (default: the classes the run did "
                   "not train on)")
    p.add_argument("--seed", type=number("--seed", SEED), default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", help="output folder (default: the run folder)")
    p.set_defaults(func=checked(_anomaly))
