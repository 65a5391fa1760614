"""The commands' numeric options (and ``--device``), checked by the config's own field rules.

Each option's ``type=`` is a :class:`Number` built from a :class:`pyrovae.runtime.fields.Rule`
(``SEED``, ``COUNT``, ``SIZE``, ``POSITIVE``, or a rule of the Python function behind the
command, e.g. ``pyrovae.applications.latent.STEPS``), so a flag, a config key and an API
argument accept the same values and refuse the rest with the same message::

    p.add_argument("--n", type=number("--n", COUNT), default=64)
    p.set_defaults(func=checked(_sample))

argparse itself would print a usage block for a value its ``type`` refuses; instead a bad
value is kept as an :class:`Invalid` and :func:`checked` raises it as a ConfigError when the
command starts (before the run is opened or any folder made), so every bad number, NaN and
inf included, gives the one line ``pyrovae: error: --n = 0 is out of range: it must be >= 1``
and exit status 2. argparse's own errors (an unknown option, a missing value, a ``--split``
or ``--score`` outside its choices) keep argparse's usage line and message, also with exit
status 2.
"""

from __future__ import annotations

import functools

from pyrovae.config.fields import Rule, check_number
from pyrovae.runtime.errors import ConfigError


class Invalid:
    """A value an option refused: raised by :func:`checked` when the command starts."""

    def __init__(self, message: str):
        self.message = message

    def __repr__(self):
        return f"Invalid({self.message!r})"


class Number:
    """argparse ``type=``: text -> a number that satisfies ``rule``, else :class:`Invalid`."""

    def __init__(self, flag: str, rule: Rule):
        self.flag, self.rule = flag, rule
        self.__name__ = rule.describe()  # how argparse would name the type

    def __call__(self, text: str):
        try:
            value = self.rule.kind(text.strip())
        except ValueError:
            kind = "an integer" if self.rule.kind is int else "a number"
            return Invalid(f"{self.flag} must be {kind}, got {text!r}")
        try:
            return check_number(value, self.flag, self.rule)
        except ConfigError as err:
            return Invalid(str(err))


class Choice:
    """argparse ``type=``: one of ``choices`` (e.g. ``--device``), else :class:`Invalid`."""

    def __init__(self, flag: str, choices):
        self.flag, self.choices = flag, tuple(choices)
        self.__name__ = "choice"

    def __call__(self, text: str):
        if text in self.choices:
            return text
        return Invalid(f"{self.flag} = {text!r} is not one of: {', '.join(self.choices)}")


def number(flag: str, rule: Rule) -> Number:
    """The ``type=`` of a numeric option ``flag`` following ``rule``."""
    return Number(flag, rule)


def choice(flag: str, choices) -> Choice:
    """The ``type=`` of an option ``flag`` taking one of ``choices``."""
    return Choice(flag, choices)


def refused(args) -> str | None:
    """The message of the first option ``args`` holds an :class:`Invalid` for, or None."""
    for value in vars(args).values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, Invalid):
                return item.message
    return None


def checked(func):
    """A command function that first refuses, in one line, any option its type refused."""
    @functools.wraps(func)
    def run(args) -> int:
        message = refused(args)
        if message is not None:
            raise ConfigError(message)
        return func(args)
    return run
