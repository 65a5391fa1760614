"""``pyrovae train``: train a VAE from a TOML config, or resume a stopped run.

    pyrovae train CONFIG.toml [--set key=value ...] [--out DIR] [--force]
    pyrovae train --resume RUN_DIR [--set epochs=N]
"""

from __future__ import annotations

import json
from pathlib import Path

from pyrovae.runtime import distributed
from pyrovae.runtime.errors import CheckpointError, ConfigError
from pyrovae.cli.common import add_common


def _train(args) -> int:
    from pyrovae.config import load_config
    from pyrovae.data import load_dataset
    from pyrovae.runs.checkpoint import unsaved_run_error
    from pyrovae.runs.folder import clean_temp_files
    from pyrovae.training import train

    if args.resume:
        if args.config or args.out or args.force:
            raise ConfigError("--resume RUN_DIR takes the config and folder of that run; drop "
                              "CONFIG, --out and --force (use --set epochs=N to train longer)")
        out = Path(args.resume)
        if not (out / "config.toml").is_file():
            raise CheckpointError(f"'{out}' is not a run folder (no config.toml) to resume")
        unsaved = unsaved_run_error(out)
        if unsaved is not None:  # killed before its first checkpoint: say so, before the data
            clean_temp_files(out)  # (e.g. the one of that checkpoint's write)
            raise unsaved
        config = load_config(out / "config.toml", args.set)
    elif not args.config:
        raise ConfigError("give a CONFIG.toml to train, or --resume RUN_DIR")
    else:
        config = load_config(args.config, args.set)
        out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    data = load_dataset(config.data)
    run = train(config, data, out=out, force=args.force, resume=bool(args.resume))
    if not distributed.is_writer():  # data-parallel: rank 0 reports for all
        return 0
    keys = ("train_elbo", "test_elbo", "test_bpd", "test_kl", "epochs", "seconds")
    print(json.dumps({k: run.metrics[k] for k in keys if k in run.metrics}, indent=2))
    print(f"run written to {out}/ (metrics.json, history.csv, checkpoint.pt, *.png)")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a VAE from a TOML config")
    p.add_argument("config", nargs="?", help="TOML file with [model], [data], [train] sections")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run from its checkpoint")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set epochs=5 --set model.elbo=trace")
    p.add_argument("--out", help="run folder (default: runs/<config name>)")
    p.add_argument("--force", action="store_true", help="overwrite an existing run folder")
    add_common(p)
    p.set_defaults(func=_train)
