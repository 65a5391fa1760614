"""A two-layer linear-Gaussian model with closed-form log p(x) and exact posterior, shared by
the known-answer tests (evaluation, bounds, gradient estimators).

Two-layer model:   z2 ~ N(0, I_L2),  z1 | z2 ~ N(A z2 + a, S1),  x | z1 ~ N(B z1 + b, S2)
so that            x ~ N(B a + b, B (A A^T + S1) B^T + S2).
Written as v = (z2, z1, x) = M eps + m with eps ~ N(0, I): the joint Gaussian of v is
N(m, M M^T), and its posterior given x is the usual Gaussian conditioning (Schur complement).
"""

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch.distributions import MultivariateNormal

F64 = torch.float64
D, L1, L2 = 5, 3, 2
NZ = L1 + L2
SHIFT, INFLATE = 0.2, 1.3  # the approximate guide: z1's mean moved, both scales widened


# ---- the two-layer linear-Gaussian model, closed form ---------------------------------------

def _params(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        return scale * torch.randn(*shape, generator=g, dtype=F64)

    def pos(n, lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=g, dtype=F64)

    return {"A": r(L1, L2), "a": r(L1, scale=0.5), "s1": pos(L1, 0.4, 0.9),
            "B": r(D, L1), "b": r(D, scale=0.5), "s2": pos(D, 0.3, 0.8)}


def _joint(p: dict):
    """Mean [L2+L1+D] and covariance of v = (z2, z1, x), from v = M eps + m."""
    A, a, s1, B, b, s2 = (p[k] for k in ("A", "a", "s1", "B", "b", "s2"))
    n = L2 + L1 + D
    M = torch.zeros(n, n, dtype=F64)
    M[:L2, :L2] = torch.eye(L2, dtype=F64)                      # z2 = e2
    M[L2:NZ, :L2] = A                                           # z1 = A e2 + s1 e1 + a
    M[L2:NZ, L2:NZ] = torch.diag(s1)
    M[NZ:, :L2] = B @ A                                         # x = B z1 + s2 ex + b
    M[NZ:, L2:NZ] = B @ torch.diag(s1)
    M[NZ:, NZ:] = torch.diag(s2)
    m = torch.cat([torch.zeros(L2, dtype=F64), a, B @ a + b])
    return m, M @ M.T


def closed_form_marginal(p: dict) -> MultivariateNormal:
    """p(x) = N(B a + b, B (A A^T + S1) B^T + S2), written out from the model's definition."""
    A, a, s1, B, b, s2 = (p[k] for k in ("A", "a", "s1", "B", "b", "s2"))
    cov = B @ (A @ A.T + torch.diag(s1**2)) @ B.T + torch.diag(s2**2)
    return MultivariateNormal(B @ a + b, cov)


class Posterior:
    """The exact posterior of (z2, z1) given x: mean(x) = mz + K (x - mx), covariance P,
    its z1 marginal and the conditional z2 | z1, x of the joint posterior."""

    def __init__(self, p: dict):
        m, S = _joint(p)
        szz, szx, sxx = S[:NZ, :NZ], S[:NZ, NZ:], S[NZ:, NZ:]
        self.mz, self.mx = m[:NZ], m[NZ:]
        self.K = szx @ torch.linalg.inv(sxx)                    # [NZ, D]
        self.P = szz - self.K @ szx.T                           # [NZ, NZ], order (z2, z1)
        self.P = (self.P + self.P.T) / 2
        p22, p21, p11 = self.P[:L2, :L2], self.P[:L2, L2:], self.P[L2:, L2:]
        self.G = p21 @ torch.linalg.inv(p11)                    # E[z2 | z1, x] slope on z1
        self.tril1 = torch.linalg.cholesky(p11)
        self.tril2 = torch.linalg.cholesky(p22 - self.G @ p21.T)
        self.x_block = S[NZ:, NZ:]

    def mean(self, x):
        return self.mz + (x - self.mx) @ self.K.T               # [..., NZ]: (z2, z1)

    def mvn(self, x):
        return MultivariateNormal(self.mean(x), self.P)


def _data_plate(x, n_data=None):
    return pyro.plate("data", n_data or x.shape[0], subsample=torch.arange(x.shape[0]))


class TwoLayer(PyroModule):
    """A user model that follows the interface: sites z2, z1, x in the "data" plate. The guide
    draws z1 from N(m1(x) + shift, (c L1)(c L1)^T) and then z2 from
    N(m2(x) + G (z1 - m1(x)), (c L2)(c L2)^T); shift = 0 and c = 1 is the exact posterior
    (z1's posterior marginal, then the exact conditional z2 | z1, x)."""

    def __init__(self, p: dict, shift: float = 0.0, inflate: float = 1.0):
        super().__init__()
        self.p, self.post = p, Posterior(p)
        self.shift = torch.full((L1,), shift, dtype=F64)
        self.inflate = inflate

    def model(self, x, n_data=None):
        p = self.p
        with _data_plate(x, n_data):
            z2 = pyro.sample("z2", dist.Normal(torch.zeros(L2, dtype=F64), 1.0).to_event(1))
            z1 = pyro.sample("z1", dist.Normal(z2 @ p["A"].T + p["a"], p["s1"]).to_event(1))
            pyro.sample("x", dist.Normal(z1 @ p["B"].T + p["b"], p["s2"]).to_event(1), obs=x)

    def guide(self, x, n_data=None):
        q = self.post
        with _data_plate(x, n_data):
            mean = q.mean(x)
            m2, m1 = mean[..., :L2], mean[..., L2:]
            z1 = pyro.sample("z1", dist.MultivariateNormal(
                m1 + self.shift, scale_tril=self.inflate * q.tril1))
            pyro.sample("z2", dist.MultivariateNormal(
                m2 + (z1 - m1) @ q.G.T, scale_tril=self.inflate * q.tril2))

    def guide_joint(self, x) -> MultivariateNormal:
        """q(z2, z1 | x) as one Gaussian (order z2, z1): the mean moves by (G shift, shift),
        the covariance scales by c^2."""
        q = self.post
        move = torch.cat([q.G @ self.shift, self.shift])
        return MultivariateNormal(q.mean(x) + move, self.inflate**2 * q.P)


class AmortizedTwoLayer(torch.nn.Module):
    """:class:`TwoLayer` with the guide's numbers as learnable parameters (phi), the model's
    fixed: z1 ~ N(W1 x + c1, T1 T1^T), z2 | z1 ~ N(W2 x + G z1 + c2, T2 T2^T), started at the
    exact posterior moved by ``shift`` (z1's mean) and widened by ``inflate``."""

    model = TwoLayer.model

    def __init__(self, p: dict, shift: float = 0.0, inflate: float = 1.0):
        super().__init__()
        self.p = p
        q = Posterior(p)
        off = q.mz - q.K @ q.mx                                  # mean(x) = off + K x
        par = torch.nn.Parameter
        self.W1, self.c1 = par(q.K[L2:].clone()), par(off[L2:] + shift)
        self.W2 = par(q.K[:L2] - q.G @ q.K[L2:])
        self.c2 = par(off[:L2] - q.G @ off[L2:])
        self.G = par(q.G.clone())
        self.T1, self.T2 = par(inflate * q.tril1), par(inflate * q.tril2)

    def guide(self, x, n_data=None):
        with _data_plate(x, n_data):
            z1 = pyro.sample("z1", dist.MultivariateNormal(x @ self.W1.T + self.c1,
                                                           scale_tril=self.T1.tril()))
            pyro.sample("z2", dist.MultivariateNormal(x @ self.W2.T + z1 @ self.G.T + self.c2,
                                                      scale_tril=self.T2.tril()))


class OneLayer(torch.nn.Module):
    """z ~ N(0, I_L), x | z ~ N(W z + b, diag(s^2)); the guide N(C x + d, T T^T) has learnable
    C, d, T, started at the exact posterior
        Sigma = (I + W^T S^-2 W)^-1,   mean(x) = Sigma W^T S^-2 (x - b),
    moved by ``shift`` and widened by ``inflate``; log p(x) = log N(x; b, W W^T + S^2)."""

    def __init__(self, latent: int = 2, dim: int = D, shift: float = 0.0, inflate: float = 1.0,
                 seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(dim, latent, generator=g, dtype=F64)
        self.b = 0.5 * torch.randn(dim, generator=g, dtype=F64)
        self.s = 0.5 + 0.4 * torch.rand(dim, generator=g, dtype=F64)
        prec = torch.eye(latent, dtype=F64) + self.W.T @ torch.diag(self.s**-2) @ self.W
        cov = torch.linalg.inv(prec)
        gain = cov @ self.W.T @ torch.diag(self.s**-2)          # mean(x) = gain (x - b)
        par = torch.nn.Parameter
        self.C, self.d = par(gain.clone()), par(-gain @ self.b + shift)
        self.T = par(inflate * torch.linalg.cholesky(cov))

    def marginal(self) -> MultivariateNormal:
        return MultivariateNormal(self.b, self.W @ self.W.T + torch.diag(self.s**2))

    def model(self, x, n_data=None):
        with _data_plate(x, n_data):
            z = pyro.sample("z", dist.Normal(torch.zeros(self.W.shape[1], dtype=F64), 1.0)
                            .to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, self.s).to_event(1), obs=x)

    def guide(self, x, n_data=None):
        with _data_plate(x, n_data):
            pyro.sample("z", dist.MultivariateNormal(x @ self.C.T + self.d,
                                                     scale_tril=self.T.tril()))
