"""The ``pyrovae`` entry point: builds the parser from the command modules, maps errors to
exit statuses (input errors 2, interrupted by signal N 128+N).

Running out of memory (``errors.out_of_memory``: torch's "DefaultCPUAllocator: can't allocate
memory", CUDA's OutOfMemoryError, a MemoryError, ENOMEM) is an input error too: one line
naming what could not be allocated, the memory this process may use and the sizes of the
command to lower (:data:`KNOBS`), exit 2. Of ``train``, it also says whether the run keeps a
checkpoint to resume (``train`` itself takes back a run folder that has none)."""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import re
import signal
import sys
import warnings
from pathlib import Path

from pyrovae.runtime import distributed
from pyrovae.runtime.errors import ConfigError, PyroVAEError, out_of_memory
from pyrovae.runtime.files import reason
from pyrovae.runs.folder import RunFolderWarning
from pyrovae.runs.trust import trusting_modules
from pyrovae.training.guards import TrainingInterrupted

#: the commands that run data-parallel under torchrun (docs/distributed.md)
PARALLEL = ("train", "evaluate")
#: subcommand modules of this package, in the order ``pyrovae --help`` lists them
COMMANDS = ("train", "evaluate", "export", "compare", "sample", "reconstruct", "interpolate",
            "traverse", "latent_map", "anomaly", "impute", "compress", "reproduce")


#: per command, the sizes to lower when it runs out of memory
KNOBS = {"train": "model.num_particles or train.batch_size (or train.eval_batch_size, or make "
                  "the model smaller) with --set KEY=VALUE",
         "evaluate": "--batch-size, --memory-mb or --nll-samples (or --points)",
         "export": "--draws or the number of --points",
         "compare": "model.num_particles or train.batch_size (--set), --nll-samples or "
                    "--grad-draws",
         "sample": "--n",
         "reconstruct": "--n",
         "interpolate": "--steps",
         "traverse": "--top or --steps",
         "latent_map": "--n (0 takes every point)",
         "anomaly": "--samples",
         "impute": "--samples, --n or --eval-n",
         "compress": "--batch-size",
         "decompress": "--batch-size of the compress that made the file (compress again)",
         "reproduce": "--nll-samples or --points"}
#: the evaluate options that add work, and the size of each to lower
_EVALUATE_EXTRAS = (("ais_steps", "--ais-chains"), ("bdmc", "--bdmc"),
                    ("gaps", "--gap-samples or --gap-eval-samples"))
_SIZE = (re.compile(r"tried to allocate (\d+) bytes", re.I),
         re.compile(r"tried to allocate ([\d.]+ ?[KMGTP]i?B)", re.I),
         re.compile(r"unable to allocate ([\d.]+ ?[KMGTP]i?B)", re.I))


#: the environment variable naming plug-in modules to import, comma-separated (as --plugin)
PLUGINS_ENV = "PYROVAE_PLUGINS"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyrovae", description="Variational autoencoders "
                                     "as Pyro programs.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of input errors")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help=f"import MODULE (a Python import path; the current folder is "
                             f"searched too) before the command, so the components it "
                             f"registers are valid choices; repeatable; also "
                             f"{PLUGINS_ENV}=mod1,mod2 (docs/plugins.md)")
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


def _allocation(err: BaseException) -> str:
    """'2.4 GiB' when the error says how much it tried to allocate, else what it needed."""
    from pyrovae.runtime.memory import format_bytes

    text = str(err)
    for pattern in _SIZE:
        found = pattern.search(text)
        if found:
            size = found.group(1)
            return format_bytes(int(size)) if size.isdigit() else size
    return "the memory it needed"


def _knobs(args) -> str:
    """The sizes of this command to lower (those of its options in use first)."""
    knobs = KNOBS.get(args.command.replace("-", "_"), "the sizes of the command")
    if args.command == "evaluate":
        extra = [flag for name, flag in _EVALUATE_EXTRAS if getattr(args, name, None)]
        if extra:
            knobs = f"{', '.join(extra)}, {knobs}"
    return knobs


def _run_folder(args) -> str:
    """Of ``train``: whether its run folder keeps a checkpoint to resume."""
    if args.command != "train":
        return ""
    from pyrovae.runs.checkpoint import CHECKPOINT_NAME

    if getattr(args, "resume", None):
        folder = Path(args.resume)
    elif getattr(args, "config", None):  # the folder cli/train.py writes
        folder = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    else:
        return ""
    if (folder / CHECKPOINT_NAME).is_file():
        return (f"; the run's last checkpoint is intact: pyrovae train --resume {folder} "
                f"continues it")
    return "; nothing was saved (no checkpoint)"


def _say_out_of_memory(args, what: str) -> int:
    """The one line of an allocation that failed (module docstring); returns 2."""
    from pyrovae.runtime.memory import format_bytes, memory_budget

    gc.collect()  # the failed command's tensors (held by the traceback until now)
    budget, why = memory_budget(getattr(args, "device", None))
    limit = f"; {why}" if why else ""
    # data-parallel: each process that ran out says so (the others may not have)
    _say(f"pyrovae: error: out of memory: could not allocate {what} ({format_bytes(budget)} "
         f"available now{limit}); lower {_knobs(args)}{_run_folder(args)} (--debug shows "
         f"where)", every_rank=True)
    return 2


class Terminated(KeyboardInterrupt):
    """SIGTERM outside training (whose own handler checkpoints first): the command stops as
    on Ctrl-C, with one line and status 128 + SIGTERM = 143."""

    signum = signal.SIGTERM


def _terminate(signum, frame):
    raise Terminated()


def _catch_sigterm():
    """Make SIGTERM raise :class:`Terminated` where nothing else handles it (the default would
    kill the process without a word); returns the handler to restore, or None."""
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            return signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: signals are the main thread's
        pass
    return None


def plugin_names(argv: list[str]) -> list[str]:
    """The modules to import: those of ``PYROVAE_PLUGINS`` (comma-separated), then each
    ``--plugin MODULE`` among the global options (those before the command)."""
    names = [n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip()]
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        if argv[i] == "--plugin" and i + 1 < len(argv):
            names.append(argv[i + 1])
            i += 1
        elif argv[i].startswith("--plugin="):
            names.append(argv[i].partition("=")[2])
        i += 1
    return list(dict.fromkeys(names))


def load_plugins(names: list[str]) -> None:
    """Import each plug-in module (its components register themselves as it is imported), the
    current folder on ``sys.path`` as ``python -m`` has it; a module that cannot be imported is
    a one-line ConfigError naming it."""
    cwd = os.getcwd()
    if names and cwd not in sys.path:
        sys.path.insert(0, cwd)
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ConfigError(f"--plugin {name}: cannot import it ({err}); give a Python "
                              f"import path (package.module) of an installed module or of a "
                              f"file in the current folder") from err
        except Exception as err:  # the plug-in's own code failed as it was imported
            raise ConfigError(f"--plugin {name}: importing it failed ({type(err).__name__}: "
                              f"{' '.join(str(err).split())}); --debug shows where") from err


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        load_plugins(plugin_names(argv))  # before the parser: its help lists their settings
    except ConfigError as err:
        if "--debug" in argv:
            raise
        print(f"pyrovae: error: {err}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    previous = _catch_sigterm()
    try:
        return _main(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(args) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("always", RunFolderWarning)
        warnings.showwarning = _one_line_warnings(warnings.showwarning)
        try:
            if distributed.launched() and args.command not in PARALLEL:
                raise ConfigError(f"pyrovae {args.command} runs as one process; several "
                                  f"processes (torchrun, WORLD_SIZE > 1) are for "
                                  f"{' and '.join(PARALLEL)}: run it without torchrun")
            with trusting_modules(getattr(args, "trust_module", False)):  # --trust-module
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
        except (MemoryError, RuntimeError, OSError) as err:
            if args.debug or not out_of_memory(err):
                if args.debug or not isinstance(err, OSError):
                    raise
                # a file no check foresaw: still one line, never a traceback
                where = f" '{err.filename}'" if err.filename else ""
                print(f"pyrovae: error: could not access{where} ({reason(err)}); check the "
                      f"path, free space or fix permissions (--debug shows where)",
                      file=sys.stderr)
                return 2
            what = _allocation(err)  # (err and its traceback are let go below)
        except KeyboardInterrupt as err:  # Ctrl-C (SIGINT), or SIGTERM (Terminated)
            signum = getattr(err, "signum", signal.SIGINT)
            named = "" if signum == signal.SIGINT else f" ({signal.Signals(signum).name})"
            print(f"pyrovae: interrupted{named}", file=sys.stderr)
            return 128 + signum
    return _say_out_of_memory(args, what)


if __name__ == "__main__":
    sys.exit(main())
