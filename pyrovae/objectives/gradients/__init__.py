"""Gradient estimators of the bounds, one per file, each registered in
:data:`pyrovae.runtime.registry.GRADIENTS` (``base.py`` says what an estimator is):

    reparam    the bound's own reparameterization gradient
    stl        sticking the landing: log q's score term dropped (Roeder et al. 2017)
    dreg       doubly reparameterized gradients (Tucker et al. 2018)
    rws        reweighted wake-sleep: wake-theta and wake-phi (Bornschein & Bengio 2015)
    rws-dreg   wake-phi doubly reparameterized (Tucker et al. 2018)
    score      REINFORCE with a leave-one-out baseline, for sampled discrete sites (ELBO)
    vimco      per-draw baselines for the IWAE bound (Mnih & Rezende 2016)
"""

from pyrovae.objectives.gradients import dreg, reparam, rws, score, stl, vimco  # noqa: F401  (each registers itself)
from pyrovae.objectives.gradients.base import GradientEstimator

__all__ = ["GradientEstimator"]
