"""Small models with exact answers, as user modules (``model.kind = "module"``) with a KL
weight beta on their latents (``poutine.scale`` in both programs, as the built-in kinds do):
the matrix's known-answer tier (``benchmarks/estimator_matrix.py``, ``tests/objectives/test_matrix.py``).

    OneLayer   z ~ N(0, I_L), x | z ~ N(W z + b, diag s^2); guide N(C x + d, T T^T) (learnable
               C, d, T; started near the exact posterior, so that the importance weights are
               balanced and a biased estimator shows). The expected beta-ELBO per point is
               closed form:
                 E_q log p(x|z) = sum_i -1/2 log(2 pi s_i^2) - ((x - W m - b)_i^2 + (W S W^T)_ii)
                                  / (2 s_i^2)
                 E_q log p(z)   = -L/2 log(2 pi) - (|m|^2 + tr S)/2
                 H[q]           = L/2 (1 + log(2 pi)) + sum_l log |T_ll|
               with m = C x + d, S = T T^T; ELBO_beta = E log p(x|z) + beta (E log p(z) + H[q]).
    TwoLayer   z2 ~ N(0, I), z1 | z2 ~ N(A z2 + a, diag s1^2), x | z1 ~ N(B z1 + b, diag s2^2);
               guide q(z1|x) q(z2|z1, x), both linear-Gaussian with diagonal scales, learnable,
               started near the exact posterior: several latent sites, the second drawn given
               the first (every path through z1 counted once).
    Discrete   y ~ Cat(1/C), x | y ~ N(mu_y, I); guide q(y|x) = softmax(V x + c): a sampled,
               not reparameterised, latent; every expectation over K draws is a finite sum
               (``exact_gradient``: the bounds' gradients and wake-phi, by enumeration).
"""

from __future__ import annotations

import itertools
import math

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

F64 = torch.float64


def _plate(x, n_data=None):
    return pyro.plate("data", n_data or x.shape[0], subsample=torch.arange(x.shape[0]))


def _randn(g, *shape, scale=1.0):
    return scale * torch.randn(*shape, generator=g, dtype=F64)


class OneLayer(torch.nn.Module):
    """(module docstring) ``beta``: the KL weight; ``input_shape`` unused (always D = 5)."""

    D, L = 5, 2
    SHIFT, INFLATE = 0.4, 1.3

    def __init__(self, beta: float = 1.0, seed: int = 0):
        super().__init__()
        self.beta, self.seed = beta, seed
        g = torch.Generator().manual_seed(seed)
        self.W, self.b = _randn(g, self.D, self.L), _randn(g, self.D, scale=0.5)
        self.s = 0.5 + 0.4 * torch.rand(self.D, generator=g, dtype=F64)
        # the guide starts at the exact posterior (beta = 1) moved by SHIFT and widened by
        # INFLATE: Sigma = (I + W^T S^-2 W)^-1, mean(x) = Sigma W^T S^-2 (x - b)
        cov = torch.linalg.inv(torch.eye(self.L, dtype=F64)
                               + self.W.T @ torch.diag(self.s**-2) @ self.W)
        gain = cov @ self.W.T @ torch.diag(self.s**-2)
        par = torch.nn.Parameter
        self.C, self.d = par(gain.clone()), par(-gain @ self.b + self.SHIFT)
        self.T = par(self.INFLATE * torch.linalg.cholesky(cov))

    def model(self, x, n_data=None):
        with _plate(x, n_data):
            with poutine.scale(scale=self.beta):
                z = pyro.sample("z", dist.Normal(torch.zeros(self.L, dtype=F64), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, self.s).to_event(1), obs=x)

    def guide(self, x, n_data=None):
        with _plate(x, n_data), poutine.scale(scale=self.beta):
            pyro.sample("z", dist.MultivariateNormal(x @ self.C.T + self.d,
                                                     scale_tril=self.T.tril()))

    def data(self, n: int = 6) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed + 1)
        z = _randn(g, n, self.L)
        return z @ self.W.T + self.b + self.s * _randn(g, n, self.D)

    def exact_loss(self, x, n_data=None) -> torch.Tensor:
        """-(N/B) sum_b ELBO_beta(x_b), in closed form (module docstring)."""
        m = x @ self.C.T + self.d                                       # [B, L]
        tril = self.T.tril()
        S = tril @ tril.T
        mean_x = m @ self.W.T + self.b
        var_x = torch.diagonal(self.W @ S @ self.W.T)
        log_lik = (-0.5 * torch.log(2 * math.pi * self.s**2)
                   - ((x - mean_x) ** 2 + var_x) / (2 * self.s**2)).sum(-1)
        log_prior = -0.5 * self.L * math.log(2 * math.pi) - 0.5 * ((m**2).sum(-1) + torch.trace(S))
        entropy = 0.5 * self.L * (1 + math.log(2 * math.pi)) + torch.log(
            torch.diagonal(tril).abs()).sum()
        elbo = log_lik + self.beta * (log_prior + entropy)
        return -((n_data or x.shape[0]) / x.shape[0]) * elbo.sum()


class TwoLayer(torch.nn.Module):
    """(module docstring)"""

    D, L1, L2 = 4, 2, 2
    SHIFT, INFLATE = 0.3, 1.3

    def __init__(self, beta: float = 1.0, seed: int = 0):
        super().__init__()
        self.beta, self.seed = beta, seed
        g = torch.Generator().manual_seed(seed)
        self.A, self.a = _randn(g, self.L1, self.L2), _randn(g, self.L1, scale=0.5)
        self.B, self.b = _randn(g, self.D, self.L1), _randn(g, self.D, scale=0.5)
        self.s1 = 0.5 + 0.4 * torch.rand(self.L1, generator=g, dtype=F64)
        self.s2 = 0.5 + 0.4 * torch.rand(self.D, generator=g, dtype=F64)
        self._start_near_the_posterior()

    def _start_near_the_posterior(self) -> None:
        """The guide's numbers from the exact posterior (Gaussian conditioning of the joint of
        (z1, z2, x)), its scales diagonal and widened by INFLATE, z1's mean moved by SHIFT:
        z1 | x ~ N(K1 x + k1, .), z2 | z1, x ~ N(K2 x + G z1 + k2, .)."""
        L1, L2, D = self.L1, self.L2, self.D
        # v = (z2, z1, x) = M e + m
        M = torch.zeros(L2 + L1 + D, L2 + L1 + D, dtype=F64)
        M[:L2, :L2] = torch.eye(L2, dtype=F64)
        M[L2:L2 + L1, :L2], M[L2:L2 + L1, L2:L2 + L1] = self.A, torch.diag(self.s1)
        M[L2 + L1:, :L2], M[L2 + L1:, L2:L2 + L1] = self.B @ self.A, self.B @ torch.diag(self.s1)
        M[L2 + L1:, L2 + L1:] = torch.diag(self.s2)
        m = torch.cat([torch.zeros(L2, dtype=F64), self.a, self.B @ self.a + self.b])
        S = M @ M.T
        # z1 | x
        i1, i2, ix = slice(L2, L2 + L1), slice(0, L2), slice(L2 + L1, None)
        sxx_inv = torch.linalg.inv(S[ix, ix])
        K1 = S[i1, ix] @ sxx_inv
        P11 = S[i1, i1] - K1 @ S[ix, i1]
        # z2 | z1, x: condition on (z1, x) jointly
        io = list(range(L2, L2 + L1 + D))
        soo_inv = torch.linalg.inv(S[io][:, io])
        K = S[i2][:, io] @ soo_inv                                   # [L2, L1 + D]
        P22 = S[i2, i2] - K @ S[io][:, i2]
        mean_o = m[io]
        par = torch.nn.Parameter
        self.C1 = par(K1.clone())
        self.c1 = par(m[i1] - K1 @ m[ix] + self.SHIFT)
        self.G, self.C2 = par(K[:, :L1].clone()), par(K[:, L1:].clone())
        self.c2 = par(m[i2] - K @ mean_o)
        self.t1 = par(self.INFLATE * torch.diagonal(P11).sqrt())
        self.t2 = par(self.INFLATE * torch.diagonal(P22).sqrt())

    def model(self, x, n_data=None):
        with _plate(x, n_data):
            with poutine.scale(scale=self.beta):
                z2 = pyro.sample("z2", dist.Normal(torch.zeros(self.L2, dtype=F64), 1.0)
                                 .to_event(1))
                z1 = pyro.sample("z1", dist.Normal(z2 @ self.A.T + self.a, self.s1).to_event(1))
            pyro.sample("x", dist.Normal(z1 @ self.B.T + self.b, self.s2).to_event(1), obs=x)

    def guide(self, x, n_data=None):
        with _plate(x, n_data), poutine.scale(scale=self.beta):
            z1 = pyro.sample("z1", dist.Normal(x @ self.C1.T + self.c1, self.t1.abs())
                             .to_event(1))
            pyro.sample("z2", dist.Normal(x @ self.C2.T + z1 @ self.G.T + self.c2,
                                          self.t2.abs()).to_event(1))

    def data(self, n: int = 6) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed + 1)
        z2 = _randn(g, n, self.L2)
        z1 = z2 @ self.A.T + self.a + self.s1 * _randn(g, n, self.L1)
        return z1 @ self.B.T + self.b + self.s2 * _randn(g, n, self.D)


class Discrete(torch.nn.Module):
    """(module docstring)"""

    C, D = 3, 2

    def __init__(self, beta: float = 1.0, seed: int = 0):
        super().__init__()
        self.beta, self.seed = beta, seed
        g = torch.Generator().manual_seed(seed)
        self.mu = _randn(g, self.C, self.D, scale=1.5)
        self.V = torch.nn.Parameter(_randn(g, self.C, self.D, scale=0.3))
        self.c = torch.nn.Parameter(_randn(g, self.C, scale=0.3))

    def model(self, x, n_data=None):
        with _plate(x, n_data):
            with poutine.scale(scale=self.beta):
                y = pyro.sample("y", dist.Categorical(torch.full((self.C,), 1 / self.C,
                                                                 dtype=F64)))
            pyro.sample("x", dist.Normal(self.mu[y], 1.0).to_event(1), obs=x)

    def guide(self, x, n_data=None):
        with _plate(x, n_data), poutine.scale(scale=self.beta):
            pyro.sample("y", dist.Categorical(logits=x @ self.V.T + self.c))

    def data(self, n: int = 4) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed + 1)
        y = torch.randint(0, self.C, (n,), generator=g)
        return self.mu[y] + _randn(g, n, self.D)

    def exact_gradient(self, x, target: str, bound: str, k: int, n_data=None) -> torch.Tensor:
        """The exact mean of the loss gradient over all C^k draws per point: ``target`` "bound"
        (the gradient of -(N/B) sum_b E[L_b]; ``bound`` elbo or iwae) or "wake" (wake-phi:
        -(N/B) sum_b E[sum_k w~_k grad log q(y_k)])."""
        log_q = torch.log_softmax(x @ self.V.T + self.c, -1)                   # [B, C]
        log_lik = dist.Normal(self.mu, 1.0).to_event(1).log_prob(x[:, None])    # [B, C]
        total = 0.0
        for ys in itertools.product(range(self.C), repeat=k):
            ys = list(ys)
            lq = log_q[:, ys]                                                   # [B, k]
            lw = log_lik[:, ys] + self.beta * (-math.log(self.C) - lq)
            prob = lq.sum(1).exp()
            if target == "wake":
                w = torch.softmax(lw.detach(), 1)
                total = total + (prob.detach() * (w * lq).sum(1)).sum()
            else:
                value = (torch.logsumexp(lw, 1) - math.log(k)) if bound == "iwae" else lw.mean(1)
                total = total + (prob * value).sum()
        loss = -((n_data or x.shape[0]) / x.shape[0]) * total
        grads = torch.autograd.grad(loss, [self.V, self.c])
        return torch.cat([g.reshape(-1) for g in grads])


MODELS = {"one-layer": OneLayer, "two-layer": TwoLayer, "discrete": Discrete}
