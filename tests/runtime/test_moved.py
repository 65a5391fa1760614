"""Release 0.1's module paths still import for one release, as the same module objects, with a
DeprecationWarning naming the new path; renamed attributes (Run.vae) read the new ones."""

import importlib
import sys

import pytest

import pyrovae
from pyrovae._moved import MOVED, new_name


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_is_the_new_module(old):
    for name in [n for n in sys.modules if n == old or n.startswith(old + ".")]:
        del sys.modules[name]  # (a test before may have imported it already)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {MOVED[old]}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old])


def test_submodules_and_from_imports_follow_a_moved_package():
    for name in ("pyrovae.semisupervised.model", "pyrovae.registry"):
        sys.modules.pop(name, None)
    with pytest.warns(DeprecationWarning):
        from pyrovae.semisupervised.model import SSVAE  # noqa: F401
    from pyrovae.kinds.ssvae.model import SSVAE as new
    assert SSVAE is new  # one class: isinstance and the registry agree
    with pytest.warns(DeprecationWarning):
        from pyrovae.registry import PRIORS
    assert PRIORS is pyrovae.PRIORS
    assert new_name("pyrovae.hierarchical.config") == "pyrovae.kinds.hvae.config"
    assert new_name("pyrovae.models") is None  # a prefix of a name is not the name


def test_run_vae_is_run_model(tmp_path):
    from pyrovae.runs.folder import Run
    from pyrovae.training.trainer import Trainer

    for cls in (Run, Trainer):
        obj = cls.__new__(cls)
        obj.model = "the model"
        assert obj.vae == "the model"
        obj.vae = "another"
        assert obj.model == "another"
