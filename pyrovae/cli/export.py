"""``pyrovae export RUN_DIR --arviz FILE.nc``: posterior draws of z for chosen data points,
their log-likelihoods and importance weights, the ELBO history and the config, as an ArviZ
InferenceData in netCDF (``az.from_netcdf(FILE.nc)``).

``pyrovae export RUN_DIR --weights DIR/model.safetensors``: the trained weights as one
safetensors file, with the run's config.toml and its model card (README.md) beside it, a folder
that ``pyrovae.load(DIR)`` and every command on a run open (``pyrovae.runs.weights``).

    pyrovae export RUN_DIR --arviz FILE.nc [--points 0,1,2] [--draws 1000] [--split test]
    pyrovae export RUN_DIR --weights DIR/model.safetensors [--force]
"""

from __future__ import annotations

from pyrovae.runtime import memory
from pyrovae.config.fields import SEED, Rule
from pyrovae.runtime.errors import ConfigError
from pyrovae.cli.common import add_run_argument, open_run
from pyrovae.cli.options import checked, number

#: draws of z per point (k-hat needs a tail); points exported at once
DRAWS = Rule(int, 25, note="too few draws: the k-hat of the importance weights needs a tail")
MAX_POINTS = 10**6


def parse_points(text: str) -> list[int]:
    """'0,5,7' or a range '0-9' (inclusive) -> indices (at most MAX_POINTS of them)."""
    spans = []
    try:
        for part in text.split(","):
            if "-" in part.strip()[1:]:
                lo, hi = part.split("-", 1)
                spans.append((int(lo), int(hi)))
            else:
                spans.append((int(part), int(part)))
    except ValueError:
        raise ConfigError(f"--points '{text}' must be indices like 0,5,7 or a range 0-9") from None
    if sum(max(0, hi - lo + 1) for lo, hi in spans) > MAX_POINTS:
        raise ConfigError(f"--points '{text}' lists more than {MAX_POINTS} points; export "
                          f"fewer at once")
    return [i for lo, hi in spans for i in range(lo, hi + 1)]


def _export(args) -> int:
    if bool(args.arviz) == bool(args.weights):
        raise ConfigError("export takes one of --arviz FILE.nc (posterior draws) or --weights "
                          "FILE.safetensors (the trained weights); give one of them")
    if args.weights:
        return _export_weights(args)
    from pyrovae.data import load_dataset
    from pyrovae.reports.arviz_export import export_arviz

    points = parse_points(args.points)
    run = open_run(args)
    memory.check_points(run.vae, args.draws * len(points), f"exporting --draws {args.draws} "
                        f"for {len(points)} points", "lower --draws or export fewer --points")
    path = export_arviz(run, load_dataset(run.config.data), args.arviz, points=points,
                        draws=args.draws, split=args.split, seed=args.seed)
    print(f"written {path}: {len(points)} points x {args.draws} draws "
          f"(open with arviz.from_netcdf)")
    return 0


def _export_weights(args) -> int:
    """The weights, config.toml and model card (module docstring); all checked before any is
    written."""
    from pathlib import Path

    from pyrovae.applications.runs import as_run
    from pyrovae.reports.model_card import model_card
    from pyrovae.runs.folder import MODEL_CARD
    from pyrovae.runs.weights import save_weights

    run = as_run(args.run, device="cpu")  # (the weights are written from the CPU)
    path = Path(args.weights)
    card = model_card(run, folder=path.parent, weights=path)
    save_weights(run, path, force=args.force, extra={MODEL_CARD: card})
    print(f"written {path} with config.toml and {MODEL_CARD} beside it (open with "
          f"pyrovae.load(\"{path.parent}\"))")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export posterior draws as an ArviZ InferenceData (.nc), "
                                      "or the trained weights as safetensors")
    add_run_argument(p)
    p.add_argument("--arviz", metavar="FILE.nc", help="netCDF file to write")
    p.add_argument("--weights", metavar="FILE.safetensors",
                   help="safetensors file to write the weights to (config.toml and README.md "
                        "go beside it)")
    p.add_argument("--force", action="store_true",
                   help="overwrite the files --weights would write")
    p.add_argument("--points", default="0-9", help="data point indices (default 0-9)")
    p.add_argument("--draws", type=number("--draws", DRAWS), default=1000,
                   help="draws of z per point (default 1000)")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--seed", type=number("--seed", SEED), default=0)
    p.set_defaults(func=checked(_export))
