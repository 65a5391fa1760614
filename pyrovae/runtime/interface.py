"""The model interface: what trainer, evaluation, compare, export and the applications need of
a model, so that any Pyro program that follows it gets all of them.

Required, of a ``torch.nn.Module`` (normally a ``pyro.nn.PyroModule``)::

    model(x, n_data=None)   a Pyro program p(x, z_1..z_m): x [B, D] observed at one or more
                            sample sites; every sample site inside one plate named "data"
                            (``DATA_PLATE``) over the B rows of x, of size ``n_data`` (N) with
                            the B rows as its subsample, so each log-density is scaled by N / B
    guide(x, n_data=None)   a Pyro program q(z_1..z_m | x) in the same plate: one site for each
                            latent site of the model; a discrete site may carry
                            ``infer={"enumerate": "parallel"}`` to be summed out

A model without the ``n_data`` keyword is run under ``poutine.scale(N / B)`` instead. Latent
sites are found from the traces, not by name: there may be any number, of any shape, nested in
further plates inside the data plate, continuous or discrete. ``max_plate_nesting`` (an
attribute, default 1) is the number of plates nested in the model, the data plate included.
The trained parameters are the module's and every ``pyro.param`` the two programs create
(``pyrovae.training.global_params``). A KL weight is the user's ``poutine.scale`` on the latent
sites of both programs, as the built-in kinds apply ``model.kl``: every estimator reads each
site's scale relative to the observed sites' N / B.

Optional capabilities, each declared by having the method (or listed in a ``capabilities``
attribute, which then is the whole list)::

    encoder       encode(x) -> (loc [B, L], scale [B, L])  a Gaussian q(z|x) for one latent z
    decoder       decode(z, **condition) -> E[x|z] [..., D]
    prior         prior() -> the distribution p(z), event shape [L]
    sample        sample(n, seed=None, temperature=1.0) -> decoded prior draws [n, D]
    reconstruct   reconstruct(x) -> E[x | z = E_q[z|x]] [B, D]
    labels        classify(x) -> [B] classes; model(x, y) and guide(x, y) take labels
    condition     condition(x) -> dict of what ``decode`` needs beside z (e.g. {"y": classes});
                  a model whose ``sample`` takes ``condition=`` draws given one
                  (``pyrovae sample --condition``)
    hierarchy     a chain of Gaussian layers z_1..z_L with p(z_L) = N(0, I) (Bit-Swap coding):
                  latent_sizes (L_1, ..., L_L); encode_layer(l, h) -> (loc, scale) of
                  q(z_l+1 | z_l), z_0 = x; prior_layer(l, z) -> (loc, scale) of
                  p(z_l | z_l+1 = z), 1 <= l < L; decode_layer0(z_1) -> the likelihood's
                  parameters, read by ``likelihood``

A model that reads more than the examples declares ``data_view(data) -> Dataset``: the data
set as it sees it (a class-conditional model appends each example's one-hot class, so its x
is [B, D + C]). Every command that hands a run's data to its model goes through
:func:`data_view`.

Commands that need a capability call :func:`require`, which refuses in one line that names
what is missing. :func:`tempered_sample` draws from any model's ``prior()`` at a temperature.
"""

from __future__ import annotations

import inspect
import math

import pyro.distributions as dist
import torch

from pyrovae.runtime.errors import ConfigError, DataError, PyroVAEError

DATA_PLATE = "data"

#: capability -> (method that provides it, what it means), in the order they are listed
CAPABILITIES = {
    "encoder": ("encode", "a Gaussian encoder encode(x) -> (loc, scale) of q(z|x)"),
    "decoder": ("decode", "a decoder decode(z) -> E[x|z]"),
    "prior": ("prior", "a prior p(z) (prior())"),
    "sample": ("sample", "sampling (sample(n, seed, temperature))"),
    "reconstruct": ("reconstruct", "reconstructions (reconstruct(x))"),
    "labels": ("classify", "labels (classify(x); model(x, y))"),
    "condition": ("condition", "a decoder conditioned on more than z (condition(x))"),
    "hierarchy": ("prior_layer", "a chain of Gaussian layers (encode_layer, prior_layer, "
                  "decode_layer0, latent_sizes)"),
}


class CapabilityError(PyroVAEError, TypeError):
    """A command needs a capability that the model does not declare."""


class InterfaceError(PyroVAEError, TypeError):
    """A module that does not follow the model interface (no model/guide, sites outside the
    data plate, ...)."""


def capabilities(module) -> frozenset[str]:
    """The capabilities ``module`` declares: its ``capabilities`` attribute when it has one,
    else those whose method it has."""
    declared = getattr(module, "capabilities", None)
    if declared is not None:
        return frozenset(declared)
    return frozenset(c for c, (method, _) in CAPABILITIES.items()
                     if callable(getattr(module, method, None)))


def has(module, capability: str) -> bool:
    return capability in capabilities(module)


def require(module, *needed: str, command: str = "this command") -> None:
    """Refuse (one line) when ``module`` lacks one of the ``needed`` capabilities."""
    have = capabilities(module)
    missing = [c for c in needed if c not in have]
    if missing:
        what = " and ".join(CAPABILITIES[c][1] for c in missing)
        listed = ", ".join(sorted(have)) or "none"
        raise CapabilityError(f"{command} needs {what}, which {type(module).__name__} does not "
                              f"declare (its capabilities: {listed}); use a model kind that has "
                              f"it, or add the method to the module")


def refuse_condition(module, command: str, why: str) -> None:
    """Refuse a command that needs an unconditional decoder p(x|z) on a model whose decoder
    needs more than z (the 'condition' capability, e.g. the SSVAE's class y)."""
    if has(module, "condition"):
        raise CapabilityError(f"{command} needs a decoder p(x|z) of z alone, but "
                              f"{type(module).__name__} decodes from z and "
                              f"{', '.join(module.condition_names)}: {why}")


def check_interface(module) -> None:
    """Refuse a module without callable ``model`` and ``guide`` methods, or with one that
    cannot be called as ``model(x)`` and ``model(x, n_data=N)`` (see :func:`check_signature`)."""
    missing = [m for m in ("model", "guide") if not callable(getattr(module, m, None))]
    if missing:
        raise InterfaceError(f"{type(module).__name__} has no {' or '.join(missing)} method: a "
                             f"pyrovae model is a module with model(x, n_data=None) and "
                             f"guide(x, n_data=None) Pyro programs (docs/custom_models.md)")
    for name in ("model", "guide"):
        check_signature(module, name)


def check_signature(module, name: str) -> None:
    """Refuse in one line a ``model`` or ``guide`` that training and evaluation cannot call:
    they pass the batch x as the one positional argument, and ``n_data=N`` by keyword when the
    program names it, so every other argument needs a default."""
    fn = getattr(module, name)
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # (a builtin: nothing to read)
        return
    problem = _signature_problem(sig, name)
    if problem:
        raise InterfaceError(f"{type(module).__name__}.{name}{sig} {problem} "
                             f"{name}(x, n_data=None) (docs/custom_models.md)")


def _signature_problem(sig: inspect.Signature, name: str) -> str | None:
    """What keeps ``sig`` from binding ``(x)`` and ``(x, n_data=N)``, in words that end with
    the fix; None if nothing."""
    params = list(sig.parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                  inspect.Parameter.VAR_POSITIONAL)
    if not params or params[0].kind not in positional:
        return "takes no positional argument for the batch x; write it as"
    try:
        sig.bind(None)
    except TypeError:
        required = [p.name for p in params[1:] if p.default is p.empty
                    and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        listed = ", ".join(f"'{r}'" for r in required)
        return (f"requires {listed} besides x, but training and evaluation call {name}(x) and "
                f"{name}(x, n_data=N); give {listed} a default, or write it as")
    if "n_data" in sig.parameters:
        try:
            sig.bind(None, n_data=1)
        except TypeError:
            return "cannot take n_data by keyword; write it as"
    return None


def takes_n_data(fn) -> bool:
    """Whether a model or guide accepts the ``n_data`` keyword (else the trainer scales)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "n_data" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def max_plate_nesting(module) -> int:
    return int(getattr(module, "max_plate_nesting", 1))


def latent_condition(module, x):
    """What ``decode`` needs besides z for the rows of x: ``module.condition(x)`` or {}."""
    return module.condition(x) if has(module, "condition") else {}


def data_view(module, data):
    """The data set as ``module`` sees it: ``module.data_view(data)`` when the module declares
    one (e.g. a label-conditioned CVAE: each row followed by its one-hot class), else
    ``data`` itself."""
    view = getattr(module, "data_view", None)
    return view(data) if callable(view) else data


def takes_condition(module) -> bool:
    """Whether ``module.sample`` draws given a condition (a ``condition`` keyword)."""
    try:
        return "condition" in inspect.signature(module.sample).parameters
    except (AttributeError, TypeError, ValueError):
        return False


def tempered_sample(prior: dist.TorchDistribution, n: int, temperature: float = 1.0):
    """n draws [n, L] from a prior at temperature T: z = mu + T * (z' - mu) for z' from the
    prior's Gaussian part N(mu, diag(s^2)) -- the prior itself (normal, learnable-normal), the
    chosen mixture component (mog, vamp), or the flow's base (then pushed through the flow)."""
    if temperature == 1.0:
        return prior.sample((n,))
    if not temperature > 0:
        raise ConfigError(f"temperature = {temperature} must be > 0 (1 = the prior itself)")
    if isinstance(prior, dist.TransformedDistribution):
        eps = tempered_sample(prior.base_dist, n, temperature)
        for t in prior.transforms:
            eps = t(eps)
        return eps
    if isinstance(prior, dist.MixtureSameFamily):
        k = prior.mixture_distribution.sample((n,))                       # [n]
        comp = prior.component_distribution                               # batch [K], event [L]
        loc = comp.mean[k]
        return loc + temperature * (comp.sample((n,))[torch.arange(n), k] - loc)
    return prior.mean + temperature * (prior.sample((n,)) - prior.mean)


def check_data(module, x: torch.Tensor, what: str) -> None:
    """Refuse data the module's likelihood cannot score: its ``likelihood.check`` when it has
    one (support, binary values, 8-bit grid, ...), else finiteness."""
    check = getattr(getattr(module, "likelihood", None), "check", None)
    if callable(check):
        check(x, what)
    elif not torch.isfinite(x).all():
        raise DataError(f"{what} has NaN or inf values; clean or drop those rows")


def input_dim(module) -> int | None:
    """D, the size of one flattened data point, when the module says (``input_dim`` or
    ``input_shape``); else None."""
    if getattr(module, "input_dim", None) is not None:
        return int(module.input_dim)
    shape = getattr(module, "input_shape", None)
    return math.prod(shape) if shape is not None else None
