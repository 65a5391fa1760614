"""The ``pyrovae`` entry point: builds the parser from the command modules, maps errors to
exit statuses (input errors 2, interrupted by signal N 128+N)."""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from .. import distributed
from ..errors import ConfigError, PyroVAEError
from ..files import reason
from ..runs.folder import RunFolderWarning
from ..training.guards import TrainingInterrupted

#: the commands that run data-parallel under torchrun (docs/distributed.md)
PARALLEL = ("train", "evaluate")
#: subcommand modules of this package, in the order ``pyrovae --help`` lists them
COMMANDS = ("train", "evaluate", "export", "compare", "sample", "reconstruct", "interpolate",
            "traverse", "latent_map", "anomaly", "impute", "reproduce")


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


def _say(line: str, every_rank: bool = False) -> None:
    """Print a final message on stderr; of several processes, rank 0's (or each, if asked)."""
    if every_rank or distributed.is_writer():
        print(line, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("always", RunFolderWarning)
        warnings.showwarning = _one_line_warnings(warnings.showwarning)
        try:
            if distributed.launched() and args.command not in PARALLEL:
                raise ConfigError(f"pyrovae {args.command} runs as one process; several "
                                  f"processes (torchrun, WORLD_SIZE > 1) are for "
                                  f"{' and '.join(PARALLEL)}: run it without torchrun")
            return args.func(args)
        except TrainingInterrupted as err:
            _say(f"pyrovae: {err}")
            return 128 + err.signum
        except PyroVAEError as err:  # (a WriteError, an OSError too, lands here)
            if args.debug:
                raise
            # data-parallel: rank 0 speaks for all, except of a process lost (each says so)
            _say(f"pyrovae: error: {' '.join(str(err).splitlines())}",
                 getattr(err, "every_rank", False))
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
