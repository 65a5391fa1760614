"""The ``pyrovae`` entry point: builds the parser from the command modules, maps errors to
exit statuses (input errors 2, interrupted by signal N 128+N)."""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from ..errors import PyroVAEError
from ..files import reason
from ..runs.folder import RunFolderWarning
from ..training.guards import TrainingInterrupted

#: subcommand modules of this package, in the order ``pyrovae --help`` lists them
COMMANDS = ("train", "evaluate", "export", "compare", "sample", "reconstruct", "interpolate",
            "traverse", "latent_map", "anomaly", "impute")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyrovae", description="Variational autoencoders "
                                     "as Pyro programs.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of input errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.{name}").add_parser(sub)
    return parser


def _one_line_warnings(show):
    """``warnings.showwarning`` printing pyrovae's own warnings (a damaged metrics.json, ...)
    as one line ``pyrovae: warning: ...``; others as ``show`` does."""
    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, RunFolderWarning):
            print(f"pyrovae: warning: {' '.join(str(message).split())}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)
    return showwarning


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("always", RunFolderWarning)
        warnings.showwarning = _one_line_warnings(warnings.showwarning)
        try:
            return args.func(args)
        except TrainingInterrupted as err:
            print(f"pyrovae: {err}", file=sys.stderr)
            return 128 + err.signum
        except PyroVAEError as err:  # (a WriteError, an OSError too, lands here)
            if args.debug:
                raise
            print(f"pyrovae: error: {' '.join(str(err).splitlines())}", file=sys.stderr)
            return 2
        except OSError as err:  # a file no check foresaw: still one line, never a traceback
            if args.debug:
                raise
            where = f" '{err.filename}'" if err.filename else ""
            print(f"pyrovae: error: could not access{where} ({reason(err)}); check the path, "
                  f"free space or fix permissions (--debug shows where)", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("pyrovae: interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
