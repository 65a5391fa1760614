"""Models you write yourself: ``model.kind = "module"`` (``ModuleConfig``), see model.py."""

from pyrovae.kinds.module import model  # noqa: F401  (registers the kind)
