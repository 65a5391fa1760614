"""The ``pyrovae`` entry point: builds the parser from the command modules, maps errors to
exit statuses (input errors 2, interrupted by signal N 128+N)."""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import PyroVAEError
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
