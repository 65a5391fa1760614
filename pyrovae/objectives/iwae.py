"""``elbo = "iwae"``: the importance-weighted bound (Burda et al. 2015) with its plain
reparameterization gradient, the same objective as ``[model.objective] bound = "iwae"``.

For each data point x_i and K draws z_ik ~ q(z|x_i)::

    log w_ik  = log p(x_i | z_ik) + beta * (log p(z_ik) - log q(z_ik | x_i))
    L_K(x_i)  = log (1/K) sum_k exp(log w_ik)
    loss      = -(N / B) * sum_{i in batch} L_K(x_i)

E[L_1] is the ELBO, E[L_K] increases with K and tends to log p(x_i) (for beta = 1). The
data plate's scale N/B multiplies the per-point bounds *outside* the log-sum-exp (the bounds,
particles and estimators are in bounds.py, particles.py and gradients/).
"""

from __future__ import annotations

from pyrovae.runtime.registry import OBJECTIVES
from pyrovae.objectives.bound_objective import BoundObjective


class IWAE_ELBO(BoundObjective):
    """Importance-weighted bound with K = ``num_particles`` draws per data point."""

    def __init__(self, num_particles: int = 1, max_plate_nesting: int = 1, **kwargs):
        super().__init__("iwae", "reparam", num_particles=num_particles,
                         max_plate_nesting=max_plate_nesting)


OBJECTIVES.register("iwae", IWAE_ELBO, vectorize=False)
