"""Guards around the training loop: stop signals and non-finite numbers."""

from __future__ import annotations

import contextlib
import signal
import warnings

import torch

from pyrovae.runtime.errors import PyroVAEError
from pyrovae.runtime.traces import point_traces


class TrainingInterrupted(PyroVAEError):
    """Training was stopped by SIGINT/SIGTERM after saving a checkpoint."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class NonFiniteError(PyroVAEError):
    """A loss, gradient or parameter became NaN or infinite."""


class StopFlag:
    """Records SIGINT/SIGTERM instead of dying, so the loop can checkpoint and stop cleanly."""

    def __init__(self):
        self.signum = 0

    def __bool__(self):
        return self.signum != 0

    def _handle(self, signum, frame):
        if self.signum:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signum = signum


@contextlib.contextmanager
def stop_on_signals():
    """Install the SIGINT/SIGTERM handlers for the duration of training (main thread only)."""
    flag = StopFlag()
    try:
        old = {s: signal.signal(s, flag._handle) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave signals alone
        old = {}
    try:
        yield flag
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def silent_nan_warnings():
    """Silence Pyro's "Encountered NaN/+inf/-inf" warnings (its ELBOs warn at every step, and
    on every backward, once a loss is not finite) while training: the NaN guard stops the run
    with one line that names the step, the parameters and the sites, and nothing should come
    before it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Encountered (NaN|\+inf|-inf)")
        yield


class FiniteWatch:
    """Tracks, on the device and without syncing, the first step whose loss was not finite."""

    def __init__(self, device):
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)

    def update(self, loss: torch.Tensor, step: int) -> None:
        bad = ~torch.isfinite(loss) & (self.first_bad < 0)
        self.first_bad = torch.where(bad, torch.full_like(self.first_bad, step), self.first_bad)

    def mark(self, step: int) -> None:
        """Record ``step`` as the first non-finite one (a distribution refused its NaN/inf
        parameters before the loss existed), unless an earlier one is recorded."""
        if int(self.first_bad) < 0:
            self.first_bad = torch.full_like(self.first_bad, step)

    def check(self, vae, batch: torch.Tensor, lr: float, checkpoint: bool = True,
              extra: dict | None = None) -> None:
        """Raise :class:`NonFiniteError` naming the step, the parameters and the sites;
        ``checkpoint`` says whether an earlier (good) checkpoint exists; ``extra`` (name ->
        tensor): parameters outside the module that are checked too (global pyro.param
        sites)."""
        step = int(self.first_bad)
        bad_params = [name for name, p in vae.named_parameters() if not torch.isfinite(p).all()]
        bad_params += [f"pyro.param '{name}'" for name, p in (extra or {}).items()
                       if not torch.isfinite(p).all()]
        if step < 0 and not bad_params:
            return
        where = f"at step {step}" if step >= 0 else "in the parameters"
        sites = _nonfinite_sites(vae, batch)
        parts = [f"training stopped: the loss became NaN/inf {where}"]
        if bad_params:
            more = f" (+{len(bad_params) - 3} more)" if len(bad_params) > 3 else ""
            parts.append(f"non-finite parameters: {', '.join(bad_params[:3])}{more}")
        if sites:
            parts.append(f"non-finite log-densities at sites: {', '.join(sites)}")
        if step == 1:  # the loss of the initial parameters: the learning rate is not the cause
            parts.append("the model or guide computes NaN/inf from its initial parameters and "
                         "the data, before any update (e.g. the log of 0, a division by 0, a "
                         "scale of 0 or a NaN in the data): fix it and start a new run")
        else:
            parts.append(f"likely causes: learning rate too high (lr = {lr:g}; try "
                         f"{lr / 10:g}) or a likelihood scale that is too small; set "
                         f"train.clip_norm to clip gradients, and start a new run" + (
                             " or resume: the last checkpoint (before the failure) is intact"
                             if checkpoint else
                             " (no checkpoint was written before the failure)"))
        raise NonFiniteError("; ".join(parts))


def _nonfinite_sites(vae, batch) -> list[str]:
    try:
        traces = point_traces(vae, batch, enumerate="none")
    except Exception:  # the networks themselves may fail on NaN weights
        return ["(could not evaluate)"]
    guide, model = traces.guide, traces.model
    sites = []
    for label, tr in (("guide", guide), ("model", model)):
        for name, site in tr.nodes.items():
            if site["type"] == "sample":
                lp = site["fn"].log_prob(site["value"])
                if not torch.isfinite(lp).all():
                    sites.append(f"{label}.{name}")
    return sites
