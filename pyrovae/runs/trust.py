"""Consent to run code a run folder names: a run folder is data, so what its config's
``model.target`` names is imported only inside :func:`trusting_modules` (``pyrovae.load(...,
trust_module=True)``, a command given ``--trust-module``); docs/reliability.md, threat model.
The kind that imports the target (``pyrovae.kinds.module.model``) asks :func:`consented`."""

from __future__ import annotations

import contextlib
import contextvars

_TRUSTED = contextvars.ContextVar("pyrovae_trust_module", default=False)


@contextlib.contextmanager
def trusting_modules(trust: bool = True):
    """Consent, for the block, to import and call the module class a run folder's
    ``model.target`` names (an enclosing consent stays)."""
    token = _TRUSTED.set(bool(trust) or _TRUSTED.get())
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def consented() -> bool:
    """Whether the code running now is inside :func:`trusting_modules` with consent."""
    return _TRUSTED.get()
