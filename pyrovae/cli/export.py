"""``pyrovae export RUN_DIR --arviz FILE.nc``: posterior draws of z for chosen data points,
their log-likelihoods and importance weights, the ELBO history and the config, as an ArviZ
InferenceData in netCDF (``az.from_netcdf(FILE.nc)``).

    pyrovae export RUN_DIR --arviz FILE.nc [--points 0,1,2] [--draws 1000] [--split test]
"""

from __future__ import annotations

from ..errors import ConfigError
from .common import add_run_argument, open_run


def parse_points(text: str) -> list[int]:
    """'0,5,7' or a range '0-9' (inclusive) -> indices."""
    out = []
    try:
        for part in text.split(","):
            if "-" in part.strip()[1:]:
                lo, hi = part.split("-", 1)
                out += list(range(int(lo), int(hi) + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise ConfigError(f"--points '{text}' must be indices like 0,5,7 or a range 0-9") from None
    return out


def _export(args) -> int:
    from ..data import load_dataset
    from ..reports.arviz_export import export_arviz

    run = open_run(args)
    points = parse_points(args.points)
    path = export_arviz(run, load_dataset(run.config.data), args.arviz, points=points,
                        draws=args.draws, split=args.split, seed=args.seed)
    print(f"written {path}: {len(points)} points x {args.draws} draws "
          f"(open with arviz.from_netcdf)")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export posterior draws as an ArviZ InferenceData (.nc)")
    add_run_argument(p)
    p.add_argument("--arviz", required=True, metavar="FILE.nc", help="netCDF file to write")
    p.add_argument("--points", default="0-9", help="data point indices (default 0-9)")
    p.add_argument("--draws", type=int, default=1000, help="draws of z per point (default 1000)")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_export)
