"""Random draws that do not depend on the number of processes.

One process draws, at a latent site of a minibatch of B rows, one tensor of noise for all B rows
(``fn.rsample()`` with batch shape [..., B, ...]). A rank holding rows r*b .. (r+1)*b - 1
(b = B/R) must draw, for its rows, the very numbers one process would have drawn for those rows,
and leave the random stream where one process leaves it. :class:`RankDraws` does this at each
latent site inside the data plate: it expands the site's distribution to the global batch,
with R copies of its own rows in the data dimension (batch shape [..., R, b, ...]: the layout of
[..., B, ...], copy r standing where rank r's rows stand), draws once -- the same count of
numbers from the same generator state as one process, so the same numbers in the same places --
and keeps copy r. Every rank's generator then advances as one process's does, so the next site,
step and checkpoint see the same random state on every rank and in one process.

This is exact (the draws of row i are one process's, whatever R) when the distribution does not
vary along the dimensions left of the data dimension: always without particles, and under a
particle plate (``num_particles`` vectorized, the bounds' particles) when the site's parameters
come from x alone (a one-layer guide), because this handler then runs inside the particle plate
(the trainer wraps the guide with it) and sees the distribution before the plate broadcasts it.
A site whose parameters already vary by particle or by an enumerated value (a second latent
layer drawn given the first, z given an enumerated y) gets the fallback: the R copies are
stacked in a new leftmost dimension, which keeps every rank's stream in step with one process
and gives each rank independent noise, but not one process's numbers for its rows. Sites
outside the data plate are drawn as usual (the same draw on every rank, as in one process).
Observed, replayed and enumerated sites are not drawn here at all (a discrete site marked for
enumeration is drawn like any other where no enumeration handler is active, as under Trace_ELBO).
"""

from __future__ import annotations

import warnings

from pyro.distributions.torch_distribution import TorchDistributionMixin
from pyro.poutine.enum_messenger import EnumMessenger
from pyro.poutine.escape_messenger import EscapeMessenger
from pyro.poutine.messenger import Messenger
from pyro.poutine.plate_messenger import PlateMessenger
from pyro.poutine.replay_messenger import ReplayMessenger
from pyro.poutine.runtime import _PYRO_STACK
from pyro.poutine.util import site_is_subsample

from pyrovae.runtime.interface import DATA_PLATE


class RankDraws(Messenger):
    """Draw each latent site of the data plate for the global batch and keep this rank's rows
    (module docstring). ``rank``, ``world``: this process and the number of processes."""

    def __init__(self, rank: int, world: int):
        super().__init__()
        self.rank, self.world = rank, world
        self._warned = False

    def _outside(self, msg) -> tuple[list, bool]:
        """The handlers entered outside this one, which see the site after it: the (dim, size)
        of the vectorized plates that will broadcast its distribution, and whether one of them
        gives the site its value (enumeration of a marked site, replay of a traced one)."""
        plates, decided = [], False
        marked = msg["infer"].get("enumerate")
        for m in _PYRO_STACK:
            if m is self:
                break
            if isinstance(m, PlateMessenger) and m.dim is not None:
                plates.append((m.dim, m.subsample_size))
            decided = decided or (marked and isinstance(m, (EnumMessenger, EscapeMessenger))) \
                or (isinstance(m, ReplayMessenger) and m.trace is not None
                    and msg["name"] in m.trace)
        return plates, decided

    @staticmethod
    def _final_shape(batch_shape, plates) -> tuple[int, ...] | None:
        """The site's batch shape once the outer plates have broadcast it (None: they cannot)."""
        shape = list(batch_shape)
        for dim, size in plates:
            if -dim > len(shape):
                shape = [1] * (-dim - len(shape)) + shape
            if shape[dim] == 1:
                shape[dim] = size
            elif shape[dim] != size:
                return None
        return tuple(shape)

    def _process_message(self, msg) -> None:
        if (msg["type"] != "sample" or msg["value"] is not None or msg["is_observed"]
                or msg["done"] or site_is_subsample(msg) or msg["args"] or msg["kwargs"]):
            return  # (a site enumerated or replayed inside this handler has its value)
        frame = next((f for f in msg["cond_indep_stack"]
                      if f.name == DATA_PLATE and f.dim is not None), None)
        fn = msg["fn"]
        if frame is None or not isinstance(fn, TorchDistributionMixin):
            return  # not per data point: every rank draws it alike, as one process does
        plates, decided = self._outside(msg)
        if decided:
            return
        final = self._final_shape(fn.batch_shape, plates)
        lead = len(fn.batch_shape) + frame.dim  # the dimensions of fn left of the data dim
        if final is None or lead < 0:
            return self._default(msg)
        if all(s == 1 for s in fn.batch_shape[:lead]):  # exact: [..., R, b, ...] is [..., B, ...]
            at = len(final) + frame.dim
            shape = final[:at] + (self.world,) + final[at:]
        else:  # fallback: R independent copies in a new leftmost dimension
            at, shape = 0, (self.world,) + final
        try:
            big = fn.expand(shape)
            _mark_plate(big, at - len(shape))
            value = big.rsample() if big.has_rsample else big.sample()
        except (NotImplementedError, RuntimeError, ValueError):
            return self._default(msg)
        msg["value"] = value.select(at, self.rank)

    def _default(self, msg) -> None:
        if not self._warned:
            warnings.warn(f"site '{msg['name']}': its distribution cannot be expanded to the "
                          f"global batch: every rank draws it as usual, so the ranks draw the same "
                          f"noise for different rows (still unbiased) and not one process's "
                          f"numbers", stacklevel=2)
            self._warned = True


def _mark_plate(fn, dim: int) -> None:
    """Declare the new dimension ``dim`` (of the batch shape) a plate dimension to a distribution
    whose draws depend on which dimensions are plates (a ``plate_dims`` attribute, as the
    ssvae's CommonNoiseNormal, which shares its noise across the other dimensions), so that
    each copy gets noise of its own; looked up through ``base_dist`` wrappers (``to_event``)."""
    while fn is not None:
        if hasattr(fn, "plate_dims"):
            fn.plate_dims = (*fn.plate_dims, dim)
            return
        fn = getattr(fn, "base_dist", None)
