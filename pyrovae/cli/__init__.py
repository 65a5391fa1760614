"""Command line: a thin layer over the Python API, one file per subcommand.

    pyrovae train CONFIG.toml [--set key=value ...] [--out DIR] [--force] [--debug]
    pyrovae train --resume RUN_DIR [--set epochs=N]

Each module listed in :data:`main.COMMANDS` defines ``add_parser(subparsers)``, which adds its
subcommand and sets ``func`` (``args -> exit status``). Errors caused by the input (config,
data, files, device) print one line and exit with status 2; ``--debug`` shows the traceback.
"""

from pyrovae.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
