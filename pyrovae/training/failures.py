"""A user's module (``model.kind = "module"``) that fails: one line naming it and where.

Once its file is imported, a module's code runs inside pyrovae: importing it (a syntax error,
an exception at module level), building it (``__init__``), the checks before training and
every step (``model``/``guide``), the evaluations and the end-of-run pictures. An exception
raised there is the user's bug, not pyrovae's: :func:`module_failure` turns it into
:class:`ModuleFailed`, one line naming the module, the ``file:line`` of the last frame of the
traceback inside the user's own code, the exception and where training was; the original
exception is its ``__cause__`` (``pyrovae --debug`` prints the whole traceback).

A distribution that refuses NaN/inf parameters under Pyro's validation (the first step
validates) is not a bug of the module but a training that diverged: :func:`nonfinite_refusal`
recognises it, and the trainer reports it with the NaN guard's line (``guards.py``).
"""

from __future__ import annotations

import os
import sys
import sysconfig
import traceback
from pathlib import Path

import torch

from pyrovae.runtime.errors import PyroVAEError, out_of_memory


class ModuleFailed(PyroVAEError):
    """A user's module raised while pyrovae imported, built, checked or trained it."""


def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and the exceptions it was raised from or during, outermost first."""
    seen, out = set(), []
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        out.append(err)
        err = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
    return out


def _norm(path: str) -> str:
    return os.path.normcase(os.path.abspath(path))


def _library_roots() -> tuple[str, ...]:
    """Folders whose code is not the user's: pyrovae, the interpreter's standard library and
    the installed packages (a user's package installed there is found by its own file)."""
    paths = sysconfig.get_paths()
    folders = [str(Path(__file__).parents[1])] + [
        paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if paths.get(key)]
    roots = {_norm(f) for f in folders} | {_norm(os.path.realpath(f)) for f in folders}
    return tuple(sorted(roots))


def _inside(path: str, roots) -> bool:
    return any(path == r or path.startswith(r + os.sep) for r in roots)


def user_files(target: str, module: torch.nn.Module | None) -> set[str]:
    """The files of the user's code: the file of ``target``'s module (``"pkg.mod:Cls"``),
    the folder of its top-level package (unless that is an installed library or pyrovae),
    and the file of ``module``'s class."""
    files = set()
    name = target.partition(":")[0]
    mod = sys.modules.get(name)
    if getattr(mod, "__file__", None):
        files.add(_norm(mod.__file__))
    roots = _library_roots()
    for path in getattr(sys.modules.get(name.partition(".")[0]), "__path__", None) or []:
        if not _inside(_norm(path), roots):
            files.add(_norm(path))
    if module is not None:
        mod = sys.modules.get(type(module).__module__)
        if getattr(mod, "__file__", None):
            files.add(_norm(mod.__file__))
    return files


def _is_user(filename: str, files: set[str], roots: tuple[str, ...]) -> bool:
    if filename.startswith("<") and not filename.startswith("<ipython"):  # <frozen ...>
        return False
    path = _norm(filename)
    return _inside(path, files) or not _inside(path, roots)


def failure_site(err: BaseException, files: set[str]):
    """``(exception, filename, lineno, function)``: where the user's code failed, from the
    innermost frame of a traceback in the chain of ``err`` that lies in the user's code (a
    ``SyntaxError`` at its own file and line); None when no frame is the user's."""
    roots = _library_roots()
    for exc in _chain(err):
        if isinstance(exc, SyntaxError) and exc.filename:
            return exc, exc.filename, exc.lineno, None
    for exc in _chain(err):
        frames = [f for f in traceback.extract_tb(exc.__traceback__)
                  if _is_user(f.filename, files, roots)]
        if frames:
            return exc, frames[-1].filename, frames[-1].lineno, frames[-1].name
    return None


def _shown(path: str) -> str:
    """``path`` relative to the current folder when it lies inside it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def _is_memory_error(err: BaseException) -> bool:
    return out_of_memory(err)


def module_failure(err: BaseException, target: str, module: torch.nn.Module | None,
                   where: str, after: str = "") -> ModuleFailed | None:
    """The :class:`ModuleFailed` for ``err`` raised in the user's module ``target``
    (``"pkg.mod:Cls"``; ``module``: the instance, when there is one) while pyrovae was at
    ``where`` (e.g. "training step 16"); ``after`` ends the line (e.g. what was kept). None for
    an exception that is pyrovae's own (an error of its own, a memory error, or no frame of
    the user's code in the traceback)."""
    if not isinstance(err, Exception) or isinstance(err, PyroVAEError) or _is_memory_error(err):
        return None
    site = failure_site(err, user_files(target, module))
    if site is None:
        return None
    exc, filename, lineno, function = site
    if isinstance(exc, SyntaxError):
        text = f"SyntaxError: {exc.msg}"
    else:
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
        text = type(exc).__name__ + (f": {first[:200]}" if first else "")
    in_function = f" in {function}()" if function and not function.startswith("<") else ""
    line = (f"your module {target} failed {where}, at {_shown(filename)}:{lineno}"
            f"{in_function}: {text}; fix it and train again{after} (--debug shows the "
            f"traceback)")
    return ModuleFailed(" ".join(line.splitlines()))


def nonfinite_refusal(err: BaseException) -> bool:
    """Whether ``err`` is a distribution's validation refusing NaN/inf parameters or values
    (torch.distributions' ValueError, possibly re-raised by Pyro with the trace's shapes)."""
    for exc in _chain(err):
        if not isinstance(exc, ValueError) or exc.__traceback__ is None:
            continue
        tb = exc.__traceback__
        while tb.tb_next is not None:
            tb = tb.tb_next
        frame = tb.tb_frame
        if f"{os.sep}distributions{os.sep}" not in frame.f_code.co_filename:
            continue
        for value in list(frame.f_locals.values()):
            if isinstance(value, torch.Tensor) and value.is_floating_point() \
                    and not bool(torch.isfinite(value.detach()).all()):
                return True
    return False


def activity(err: BaseException, step: int | None = None, epoch: int | None = None) -> str:
    """What pyrovae was doing with the module when ``err`` was raised, from the names of the
    functions in its traceback (``step``/``epoch``: the trainer's position, once training)."""
    names = {frame.name for exc in _chain(err)
             for frame in traceback.extract_tb(exc.__traceback__)}
    if any(isinstance(exc, SyntaxError) for exc in _chain(err)) or "import_module" in names:
        return "while being imported"
    if "build_user_module" in names:
        return "while being built (its __init__ with model.args)"
    if names & {"_check_programs", "check_data_plate", "_check_objective", "check_compatible"}:
        return "in the check run before training"
    if "_compile" in names:
        return "while its objective was compiled, before the first step"
    if step is None:
        return "before training"
    if "train_step" in names:
        return f"at training step {step + 1} (epoch {epoch})"
    if "evaluate" in names or "_end_epoch" in names:
        return f"while epoch {epoch} was evaluated (after step {step})"
    if "write_reports" in names:
        return "while the end-of-run reports were written"
    return f"during training (after step {step})"
