"""Classification accuracy of a model with the "labels" capability (``classify(x)``, e.g. the
SSVAE's argmax q(y|x)): the fraction of rows of x [N, D] whose predicted class is y [N]."""

from __future__ import annotations

import torch

from pyrovae.runtime.traces import eval_mode


@torch.no_grad()
def accuracy(module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Fraction of rows of x [N, D] with ``module.classify(x) == y``."""
    with eval_mode(module):
        right = sum(int((module.classify(x[i:i + batch_size]) == y[i:i + batch_size].to(x.device)
                         ).sum()) for i in range(0, x.shape[0], batch_size))
    return right / max(x.shape[0], 1)
