"""Experiments over many runs: a grid of config variations (``grid``), trained, evaluated and
tabulated by ``compare`` (the ``pyrovae compare`` command)."""

from pyrovae.experiments.compare import CompareResult, Settings, compare, plan
from pyrovae.experiments.grid import Combination, RunSpec, expand, parse_vary

__all__ = ["Combination", "CompareResult", "RunSpec", "Settings", "compare", "expand", "plan",
           "parse_vary"]
