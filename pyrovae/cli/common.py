"""Arguments shared by the subcommands that work on a trained run folder, and by every
command: ``--debug`` and ``--trust-module``."""

from __future__ import annotations

import argparse

TRUST_HELP = ("consent to import and run the Python class that a run folder's model.target "
              "names (a model you wrote); a run folder is data, so "
              "without this flag no code it names is imported: give it only for runs from "
              "someone whose code you would run")


def add_common(p: argparse.ArgumentParser) -> None:
    """``--debug`` after the subcommand as well as before it, and ``--trust-module`` (every
    command: each may open a run folder)."""
    # SUPPRESS: without it this default (False) would override `pyrovae --debug CMD ...`
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    # (main runs the command inside pyrovae.runs.trust.trusting_modules(args.trust_module))
    p.add_argument("--trust-module", action="store_true", help=TRUST_HELP)


def add_run_argument(p: argparse.ArgumentParser) -> None:
    """The positional RUN_DIR and ``--device`` of every command on a trained run."""
    p.add_argument("run", metavar="RUN_DIR", help="a run folder written by `pyrovae train`")
    from pyrovae.config import DEVICES
    from pyrovae.cli.options import choice

    p.add_argument("--device", default="cpu", type=choice("--device", DEVICES),
                   help="cpu | cuda (default cpu)")
    add_common(p)


def open_run(args):
    """Load ``args.run`` (a :class:`pyrovae.Run`) or raise a one-line CheckpointError (or the
    one-line ConfigError of a module run opened without ``--trust-module``); then
    prove, before any work, that the command's output folder (``--out``, the folder of
    ``--arviz FILE``, or the run folder) can be written, else a one-line WriteError."""
    from pyrovae.applications.runs import as_run, output_dir
    from pyrovae.runtime.files import writable_dir

    run = as_run(args.run, device=args.device)  # (main consents for --trust-module)
    if getattr(args, "arviz", None):
        from pathlib import Path

        writable_dir(Path(args.arviz).parent, "output folder", "choose another --arviz path")
    elif hasattr(args, "out"):
        output_dir(run, args.out)
    return run


def add_data_argument(p: argparse.ArgumentParser, default: str = "test") -> None:
    """``--data SPEC``: which examples a command on a run reads (see applications/runs.py)."""
    p.add_argument("--data", default=default, metavar="SPEC",
                   help=f"test | train | test:all | train:all (every class, also those the run "
                        f"excluded) | CONFIG.toml | a data set or .npz (default {default})")


def print_result(result: dict, skip=()) -> int:
    """Print a command's numbers as JSON (without the bulky ``skip`` keys); exit status 0."""
    import json

    print(json.dumps({k: v for k, v in result.items() if k not in skip}, indent=2))
    return 0
