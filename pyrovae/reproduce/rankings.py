"""The estimator rankings papers claim, as recipes with metric "ranking" (docs/reproduce.md).

A :class:`Ranking` is registered in the same REPRODUCTIONS registry as the single-number
recipes (so ``pyrovae reproduce --list`` shows it) and holds contenders, each a set of config
edits over one shared base config (Burda et al.'s one-layer MNIST 784-200-200-50 model,
``recipes._burda_config``), and the pairs (claimed better, other) the paper ranks.
``pyrovae reproduce NAME`` trains every contender with seeds 0..n-1 (ranking_runner.py), and
for each pair with test NLLs x_s (claimed better) and y_s (other) per seed s::

    d_s = x_s - y_s                       paired by seed: one seed gives both contenders the
                                          same initialisation and the same data order
    mean d = (1/n) sum_s d_s,  SE = sd(d) / sqrt(n)    (sd with n - 1 in the denominator)
    95 % interval = mean d -+ t_{0.975, n-1} SE        (Student's t, n - 1 degrees of freedom)

and the verdict, the NLL being lower-is-better: "reproduced" when the interval lies entirely
below 0 (the claimed-better contender's NLL is lower), "not reproduced" when it lies entirely
above 0, "not resolvable at this budget" when it contains 0.

Equal wall time: the contenders of a ranking draw the same number of particles per point (K,
or M * K for the grouped bounds), so equal epochs are close to equal training time; each row
states the measured ratio of training seconds and says when it exceeds ``TIME_TOLERANCE``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

from pyrovae.reproduce.recipes import _ONE, REPRODUCTIONS, _burda_config

#: the verdicts, by where the 95 % interval of (claimed better - other) lies
REPRODUCED, NOT_REPRODUCED, UNRESOLVED = ("reproduced", "not reproduced",
                                          "not resolvable at this budget")
#: a ratio of training times above this (either way) is reported as unequal wall time
TIME_TOLERANCE = 1.25
#: Student's t quantile t_{0.975, dof} for dof = 1..30 (scipy.stats.t.ppf, to 4 decimals)
_T975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
         2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
         2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423)


def t975(dof: int) -> float:
    """Student's t 0.975 quantile with ``dof`` >= 1 degrees of freedom: the table above, and
    beyond 30 the Cornish-Fisher expansion around z = 1.959964 (error below 1e-5)."""
    if dof < 1:
        raise ValueError(f"a t interval needs >= 1 degree of freedom, got {dof}")
    if dof <= len(_T975):
        return _T975[dof - 1]
    z, d = 1.959964, float(dof)
    return (z + (z**3 + z) / (4 * d) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * d**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * d**3))


def mean_se(values: list[float]) -> tuple[float, float]:
    """The mean of ``values`` and its standard error sd / sqrt(n) (sd with n - 1)."""
    n = len(values)
    if n < 2:
        raise ValueError(f"a standard error needs >= 2 values, got {n}")
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def paired_interval(better: list[float], other: list[float]) -> dict:
    """The paired difference better - other per seed (lists in seed order, of equal length
    n >= 2): its mean, SE and 95 % t interval with n - 1 degrees of freedom."""
    if len(better) != len(other):
        raise ValueError(f"paired by seed: {len(better)} values against {len(other)}")
    diffs = [b - o for b, o in zip(better, other)]
    mean, se = mean_se(diffs)
    half = t975(len(diffs) - 1) * se
    return {"diff_mean": mean, "diff_se": se, "diff_lo": mean - half, "diff_hi": mean + half}


def verdict(lo: float, hi: float, better: str = "lower") -> str:
    """Where the interval [lo, hi] of (claimed better - other) lies, for a metric where
    ``better`` ("lower" or "higher") values win: entirely on the claimed side "reproduced",
    entirely on the other "not reproduced", containing 0 "not resolvable at this budget"."""
    if better not in ("lower", "higher"):
        raise ValueError(f"better is 'lower' or 'higher', not {better!r}")
    if better == "higher":
        lo, hi = -hi, -lo
    if hi < 0:
        return REPRODUCED
    if lo > 0:
        return NOT_REPRODUCED
    return UNRESOLVED


def _merged(base: dict, edits: dict) -> dict:
    """``base`` with the nested dict ``edits`` merged into it (a copy; edits win)."""
    out = copy.deepcopy(base)
    for key, value in edits.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class Ranking:
    """A ranking of estimators a paper claims, and how to test it (module docstring).

    ``config`` is the shared base run config (a TOML-like dict); ``contenders`` maps a name to
    its edits (a nested dict merged into the base, e.g. ``{"model": {"objective": {...}}}``);
    ``pairs`` are (claimed better, other) contender names; ``paper_values`` the published test
    NLL of a contender where the paper gives one; ``epochs`` the training budget per run (the
    base config's ``train.epochs`` is set to it); test NLL by IS with ``nll_samples`` draws on
    ``points`` test images (None = all)."""

    paper: str
    claim: str
    config: dict
    contenders: dict
    pairs: tuple
    epochs: int
    seeds: int = 3
    nll_samples: int = 5000
    points: int | None = None
    paper_values: dict = field(default_factory=dict)
    budget: str = ""
    notes: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)
    metric: str = "ranking"
    paper_value = None  # (what --list and the single-number runner read of a Recipe)
    goal = None

    def __post_init__(self):
        for pair in self.pairs:
            for name in pair:
                if name not in self.contenders:
                    raise ValueError(f"pair {pair} names {name!r}, not a contender of "
                                     f"{tuple(self.contenders)}")
        if self.seeds < 2:
            raise ValueError(f"a ranking needs >= 2 seeds for a standard error, got "
                             f"{self.seeds}")

    @property
    def table(self) -> str:
        """The claim (what --list shows where a recipe shows its table row)."""
        return self.claim

    def run_config(self) -> dict:
        """The base config with the epoch budget (a fresh copy)."""
        return _merged(self.config, {"train": {"epochs": self.epochs}})

    def contender_config(self, name: str) -> dict:
        """The whole run config of contender ``name`` (a fresh copy)."""
        return _merged(self.run_config(), self.contenders[name])

    def used(self) -> list[str]:
        """The contenders some pair names, in the order of ``contenders``."""
        named = {n for pair in self.pairs for n in pair}
        return [n for n in self.contenders if n in named]


def objective(bound: str, gradient: str, k: int, **settings) -> dict:
    """The edits that train with ``bound`` and ``gradient`` on K = ``k`` draws per point (per
    group for miwae and piwae; ``settings`` such as groups, ciwae_beta)."""
    return {"model": {"num_particles": k,
                      "objective": {"bound": bound, "gradient": gradient, **settings}}}


# ---- the rankings ------------------------------------------------------------------------------

def _register(name: str, **kwargs) -> None:
    REPRODUCTIONS.register(name, Ranking(**kwargs))


_TUCKER = "Tucker et al. 2018"
for _k, _epochs in ((5, 20), (50, 3)):
    _register(
        f"dreg-vs-iwae-{_k}", paper=_TUCKER,
        claim=f"IWAE trained with DReG gradients reaches a lower test NLL than with the plain "
              f"reparameterization gradient, K = {_k}",
        config=_burda_config(*_ONE, "iwae", _k, epochs=_epochs),
        contenders={"iwae-dreg": objective("iwae", "dreg", _k),
                    "iwae": objective("iwae", "reparam", _k)},
        pairs=(("iwae-dreg", "iwae"),), epochs=_epochs, nll_samples=1000, points=2000,
        paper_values={"iwae-dreg": 84.90, "iwae": 85.18} if _k == 5 else {},
        notes="the published values at K = 5 are a reimplementation's after full training "
              "(as issue 31 cites them); Tucker et al. show the ranking as training curves",
        tags=("ranking", "dreg"))

_register(
    "tighter-vs-iwae-64", paper="Rainforth et al. 2018",
    claim="MIWAE(M=8, K=8), PIWAE(8, 8) and CIWAE(beta = 0.05, K = 64) each reach a lower "
          "test NLL than IWAE with K = 64 (tighter bounds are not necessarily better)",
    config=_burda_config(*_ONE, "iwae", 64, epochs=2),
    contenders={"miwae-8x8": objective("miwae", "reparam", 8, groups=8),
                "piwae-8x8": objective("piwae", "reparam", 8, groups=8),
                "ciwae-0.05": objective("ciwae", "reparam", 64, ciwae_beta=0.05),
                "iwae-64": objective("iwae", "reparam", 64)},
    pairs=(("miwae-8x8", "iwae-64"), ("piwae-8x8", "iwae-64"), ("ciwae-0.05", "iwae-64")),
    epochs=2, nll_samples=1000, points=2000,
    paper_values={"miwae-8x8": 84.97, "piwae-8x8": 84.46, "ciwae-0.05": 84.57},
    notes="every contender draws 64 particles per point; the paper trains far longer",
    tags=("ranking", "rainforth"))

_register(
    "stl-vs-reparam-elbo", paper="Roeder et al. 2017",
    claim="the ELBO trained with the sticking-the-landing gradient reaches a lower test NLL "
          "than with the plain reparameterization gradient, K = 1",
    config=_burda_config(*_ONE, "elbo", 1, epochs=30),
    contenders={"elbo-stl": {"model": {"objective": {"bound": "elbo", "gradient": "stl"}}},
                "elbo": {}},
    pairs=(("elbo-stl", "elbo"),), epochs=30, nll_samples=1000, points=2000,
    notes="STL on the multi-sample bounds at K > 1 is biased and refused without "
          "objective.biased = true, so the ranking is the ELBO's at K = 1",
    tags=("ranking", "stl"))
