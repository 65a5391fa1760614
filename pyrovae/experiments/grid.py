"""The grid of a comparison: every combination of ``--vary`` values, times seeds.

    --vary KEY=V1,V2,...     KEY is any key ``--set`` takes (``elbo``, ``model.prior.name``,
                             ``kl.beta``, ...); values are TOML like ``--set`` values, split at
                             commas outside brackets and quotes (``hidden=[400],[200,200]``)
    V+KEY2=W                 a value may carry extra settings that apply only with it:
                             ``elbo=trace,iwae+num_particles=5`` trains IWAE with K = 5 and
                             ``trace`` with the config's own ``num_particles``

The grid is the Cartesian product of the ``--vary`` options in the order given, each
combination trained once per seed. Every combination's config is built (and so validated by
the config dataclasses) here, before anything is trained; the invalid ones are returned with
the reason, for the caller to refuse or skip.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field, replace

from pyrovae.config import RunConfig, _resolve_key, apply_overrides, settable_keys
from pyrovae.runtime.errors import ConfigError

# a '+' that starts another key=value (not the '+' of 1e+3)
_EXTRA = re.compile(r"\+(?=\s*[A-Za-z_][\w.]*\s*=)")


@dataclass(frozen=True)
class Option:
    """One value of one ``--vary``: its label and the ``key=value`` edits it makes."""

    key: str
    label: str
    assignments: tuple[str, ...]


@dataclass
class Combination:
    """One point of the grid: its options, its config (None when invalid) and why not."""

    options: tuple[Option, ...]
    config: RunConfig | None = None
    error: str = ""

    @property
    def label(self) -> str:
        """``elbo=iwae+num_particles=5 prior=vamp`` (``base`` for an empty grid)."""
        return " ".join(f"{o.key}={o.label}" for o in self.options) or "base"

    @property
    def values(self) -> dict[str, str]:
        return {o.key: o.label for o in self.options}

    @property
    def folder(self) -> str:
        """A file-name-safe name: ``elbo-iwae+num_particles-5_prior-vamp``."""
        text = "_".join(f"{o.key}-{o.label}" for o in self.options) or "base"
        return re.sub(r"[^A-Za-z0-9._+]+", "-", text).strip("-")


@dataclass
class RunSpec:
    """One training run of the grid: a valid combination with one seed."""

    combination: Combination
    seed: int
    config: RunConfig = field(repr=False)

    @property
    def name(self) -> str:
        return f"{self.combination.folder}_seed{self.seed}"


def split_values(text: str) -> list[str]:
    """Split at commas outside brackets, braces and quotes: ``a,[1,2],"x,y"`` -> 3 values."""
    parts, depth, quote, start = [], 0, "", 0
    for i, c in enumerate(text):
        if quote:
            quote = "" if c == quote else quote
        elif c in "\"'":
            quote = c
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def parse_vary(spec: str) -> list[Option]:
    """``KEY=V1,V2+K2=W`` -> one :class:`Option` per value."""
    if "=" not in spec:
        raise ConfigError(f"--vary expects KEY=V1,V2,..., got '{spec}'")
    key, text = (s.strip() for s in spec.split("=", 1))
    if not key:
        raise ConfigError(f"--vary '{spec}' has no key before '='")
    options = []
    for value in split_values(text):
        head, *extra = (s.strip() for s in _EXTRA.split(value))
        if not head:
            raise ConfigError(f"--vary {key} has an empty value in '{text}'; write "
                              f"{key}=V1,V2 with no empty items")
        options.append(Option(key, value, (f"{key}={head}", *extra)))
    labels = [o.label for o in options]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"--vary {key} lists a value twice: {', '.join(labels)}")
    return options


def check_keys(option: Option) -> None:
    """Refuse an unknown or ambiguous key now: a typo is an error, not an invalid combination."""
    known = settable_keys()  # the keys --set takes: every section, every model kind
    for assignment in option.assignments:
        if "=" not in assignment:
            raise ConfigError(f"--vary value '{option.label}': '{assignment}' is not key=value")
        try:
            path = _resolve_key(assignment.split("=", 1)[0].strip(), known)
        except ConfigError as err:
            raise ConfigError(f"--vary {option.key}: {err}") from None
        if path == ("train", "seed"):
            raise ConfigError("--vary cannot set train.seed: every combination runs with the "
                              "seeds of --seeds N (train.seed, train.seed+1, ...)")


def seed_list(base: RunConfig, seeds: int) -> list[int]:
    """``seeds`` seeds counting up from the config's ``train.seed``."""
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds}: need at least 1 seed")
    return [base.train.seed + i for i in range(seeds)]


def expand(base: RunConfig, varies: list[str], seeds: int = 1) -> tuple[list[RunSpec],
                                                                       list[Combination]]:
    """(runs of the valid combinations, invalid combinations with their ``error``).

    ``base`` already has the ``--set`` edits; each combination applies its options on top of it
    in ``--vary`` order, then each seed sets ``train.seed``.
    """
    axes = [parse_vary(v) for v in varies]
    for axis in axes:
        for option in axis:
            check_keys(option)
    keys = [a[0].key for a in axes]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"--vary names a key twice ({', '.join(keys)}); give all its values "
                          f"in one --vary KEY=V1,V2")
    runs, invalid, folders = [], [], {}
    for options in itertools.product(*axes):
        combo = Combination(tuple(options))
        edits = [a for o in options for a in o.assignments]
        try:
            combo.config = apply_overrides(base, edits)
        except ConfigError as err:
            combo.error = str(err)
            invalid.append(combo)
            continue
        if combo.folder in folders:
            raise ConfigError(f"combinations '{folders[combo.folder]}' and '{combo.label}' would "
                              f"share the run folder '{combo.folder}'; make the values differ "
                              f"in letters or digits")
        folders[combo.folder] = combo.label
        for seed in seed_list(base, seeds):
            config = replace(combo.config, train=replace(combo.config.train, seed=seed))
            runs.append(RunSpec(combo, seed, config))
    return runs, invalid
