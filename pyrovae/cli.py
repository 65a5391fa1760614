"""Command line: a thin layer over the Python API.

    pyrovae train CONFIG.toml [--set key=value ...] [--out DIR] [--force] [--debug]
    pyrovae train --resume RUN_DIR [--set epochs=N]

Errors caused by the input (config, data, files, device) print one line and exit with
status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import CheckpointError, ConfigError, PyroVAEError
from .training.guards import TrainingInterrupted


def _train(args) -> int:
    from .config import load_config
    from .data import load_dataset
    from .training import train

    if args.resume:
        if args.config or args.out or args.force:
            raise ConfigError("--resume RUN_DIR takes the config and folder of that run; drop "
                              "CONFIG, --out and --force (use --set epochs=N to train longer)")
        out = Path(args.resume)
        if not (out / "config.toml").is_file():
            raise CheckpointError(f"'{out}' is not a run folder (no config.toml) to resume")
        config = load_config(out / "config.toml", args.set)
    elif not args.config:
        raise ConfigError("give a CONFIG.toml to train, or --resume RUN_DIR")
    else:
        config = load_config(args.config, args.set)
        out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    data = load_dataset(config.data)
    run = train(config, data, out=out, force=args.force, resume=bool(args.resume))
    keys = ("train_elbo", "test_elbo", "test_kl", "epochs", "seconds")
    print(json.dumps({k: run.metrics[k] for k in keys}, indent=2))
    print(f"run written to {out}/ (metrics.json, history.csv, checkpoint.pt, *.png)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyrovae", description="Variational autoencoders "
                                     "as Pyro programs.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of input errors")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a VAE from a TOML config")
    p.add_argument("config", nargs="?", help="TOML file with [model], [data], [train] sections")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run from its checkpoint")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set epochs=5 --set model.elbo=trace")
    p.add_argument("--out", help="run folder (default: runs/<config name>)")
    p.add_argument("--force", action="store_true", help="overwrite an existing run folder")
    # SUPPRESS: without it this default (False) would override `pyrovae --debug train ...`
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    p.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TrainingInterrupted as err:
        print(f"pyrovae: {err}", file=sys.stderr)
        return 128 + err.signum
    except PyroVAEError as err:
        if args.debug:
            raise
        print(f"pyrovae: error: {' '.join(str(err).splitlines())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pyrovae: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
