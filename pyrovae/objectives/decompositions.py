"""Decompositions of the KL term, chosen by ``[model.kl] decomposition`` (docs/kl.md):

    none     the ELBO's KL term as it is
    tc       beta-TCVAE (Chen et al. 2018): the KL term averaged over the data split into
             index-code mutual information, total correlation and dimension-wise KL, weighted
             alpha, beta, gamma (``tc_alpha``, ``tc_beta``, ``tc_gamma``)
    dip-i    DIP-VAE-I (Kumar et al. 2018): the ELBO plus a penalty on the covariance of the
             encoder means
    dip-ii   DIP-VAE-II: the same penalty on the covariance of the aggregate posterior
    factor   FactorVAE (Kim & Mnih 2018): the ELBO plus gamma times a discriminator's estimate
             of the total correlation, the discriminator trained beside the VAE (factor_vae.py)

**tc.** With n uniform over the N data points and q(z) = (1/N) sum_n q(z|n),

    E_n KL(q(z|n) || p(z)) = I_q(z; n) + KL(q(z) || prod_j q(z_j)) + sum_j KL(q(z_j) || p(z_j))
                           =    MI     +          TC              +           DW

and on one draw z_i ~ q(z|x_i) per point of a minibatch of B (z, mu, sigma: [B, L])

    MI_i = log q(z_i|x_i) - log q^(z_i)
    TC_i = log q^(z_i) - sum_j log q^(z_ij)
    DW_i = sum_j log q^(z_ij) - log p(z_i)

with the aggregate posterior and its marginals estimated on the minibatch:

    log q^(z_i)  = logsumexp_k [log w_ik + log q(z_i|x_k)]                 [B]
    log q^(z_ij) = logsumexp_k [log w_ik + log q(z_ij|x_k)]                [B, L]

    mws (minibatch-weighted sampling):     w_ik = 1 / (N B)
    mss (minibatch-stratified sampling):   w_ii = 1/N, w_i,i+1 (mod B) = (N - M) / (N M),
                                           w_ik = 1/M otherwise,  M = B - 1

(Chen et al.'s appendix C). MSS's weights sum to 1 and make q^(z) an unbiased estimate of
q(z) for a minibatch drawn without replacement: log q^ is consistent as B grows. MWS is the
paper's eq. as its code computes it (log(N B)); its weights sum to 1/N, so its log q^(z) and
each marginal's sit about log N below log q: MI is high by log N, TC by (L - 1) log N and DW
low by L log N. The offsets are constants that cancel in MI + TC + DW and give no gradient,
so MWS trains as in the paper, but its three numbers are not estimates of the three terms
(``pyrovae evaluate`` reports MSS). The reference code's MSS matrix sets its diagonal with a
stride of B instead of B + 1 (rtqichen/beta-tcvae, its pull request 1); here it is indexed
as the appendix writes it.

On every draw MI_i + TC_i + DW_i = log q(z_i|x_i) - log p(z_i), the KL term's Monte Carlo
estimate, whatever the estimator. The loss is meanfield's with the KL term of each point

    KL(q(z|x_i) || p(z)) + (alpha - 1) MI_i + (beta - 1) TC_i + (gamma - 1) DW_i

(the closed-form KL of ``meanfield``, scaled like it by the data plate's N/B and by the KL
weight beta_t of ``kl.beta`` and its schedule). Its expectation and its expected gradient
(reparameterised z) are those of alpha MI + beta TC + gamma DW, Chen et al.'s surrogate,
because E[MI_i + TC_i + DW_i] = KL and E grad of it = grad KL; the closed-form KL only takes
the variance of the weight-1 part away. With alpha = beta = gamma = 1 it is exactly
``meanfield``'s ELBO, draw by draw.

**dip-i, dip-ii.** On the minibatch (biased covariances, 1/B), with mu, sigma [B, L] of q(z|x):

    C_I  = Cov_b[mu_b]                          DIP-VAE-I
    C_II = mean_b diag(sigma_b^2) + Cov_b[mu_b]  DIP-VAE-II, the aggregate posterior's
    penalty = lambda_od sum_{i != j} C_ij^2 + lambda_d sum_i (C_ii - 1)^2

per data point; the loss adds N times it (N/B times its sum over the B points, as the data
plate scales the ELBO), not scaled by the KL weight. Kumar et al. set lambda_d = 10 lambda_od
for DIP-VAE-I and lambda_d = lambda_od for DIP-VAE-II; the defaults (10, 100) and (10, 10)
follow that, lambda_od = 10 within disentanglement_lib's sweep (1 to 50).

Each decomposition registers itself in ``KL_DECOMPOSITIONS`` with its settings dataclass; the
mean-field objectives get their decomposed forms as the OBJECTIVES capability
``decomposition`` (as free bits do), which ``objectives.make_elbo`` builds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from pyro.infer.util import torch_item
from torch.distributions import Normal

from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.registry import KL_DECOMPOSITIONS, OBJECTIVES
from pyrovae.runtime.settings import NoSettings, setting, settings_of
from pyrovae.objectives.factor_vae import FactorSettings, FactorTraining
from pyrovae.objectives.jit import JitTraceMeanFieldELBO
from pyrovae.objectives.pyro_elbos import MeanFieldELBO

ESTIMATORS = ("mss", "mws")


# ---- the estimators of log q(z) ----------------------------------------------------------------

def log_weights(batch: int, n_data: int, estimator: str, dtype=torch.float64,
                device=None) -> torch.Tensor:
    """log w [B, B] of the minibatch estimate of q(z_i) = sum_k w_ik q(z_i|x_k) (module
    docstring): ``mws`` 1/(N B) everywhere; ``mss`` Chen et al.'s stratified weights."""
    if estimator not in ESTIMATORS:
        raise ConfigError(f"tc_estimator = {estimator!r} is not one of: {', '.join(ESTIMATORS)}")
    if n_data < batch:
        raise ConfigError(f"the data set size N = {n_data} is below the minibatch's {batch}; "
                          f"pass n_data, the number of points the minibatch is drawn from")
    if estimator == "mws":
        return torch.full((batch, batch), -math.log(n_data * batch), dtype=dtype, device=device)
    if batch < 2:
        raise ConfigError("tc_estimator = \"mss\" needs minibatches of at least 2 points; raise "
                          "train.batch_size or use tc_estimator = \"mws\"")
    m = batch - 1
    w = torch.full((batch, batch), 1.0 / m, dtype=dtype, device=device)
    rows = torch.arange(batch, device=device)
    w[rows, (rows + 1) % batch] = (n_data - m) / (n_data * m)
    w[rows, rows] = 1.0 / n_data
    return w.log()


def tc_terms(z: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, log_p: torch.Tensor | None,
             n_data: int, estimator: str = "mss", chunk: int | None = None):
    """Per-point (MI, TC, DW) [B] of the module docstring for draws z [B, L] of q(z|x_b) =
    N(mu_b, diag(sigma_b^2)); ``log_p`` [B, L] the prior's log-density per dimension at z
    (None: DW is None). ``chunk`` rows of the [B, B, L] pair densities at a time (memory)."""
    b = z.shape[0]
    log_w = log_weights(b, n_data, estimator, z.dtype, z.device)
    # log q(z_ij|x_k) laid out [rows, L, B]: the sums over k run along the last, contiguous axis
    loc, inv = mu.T.unsqueeze(0), sigma.reciprocal().T.unsqueeze(0)           # [1, L, B]
    norm = (sigma.log() + 0.5 * math.log(2 * math.pi)).T.unsqueeze(0)         # [1, L, B]
    own, joint, dims = [], [], []
    step = chunk or b
    for i in range(0, b, step):
        pairs = -0.5 * ((z[i:i + step].unsqueeze(-1) - loc) * inv).pow(2) - norm  # [c, L, B]
        w = log_w[i:i + step]                                        # [c, B]
        rows = torch.arange(i, min(i + step, b), device=z.device)
        own.append(pairs[rows - i, :, rows].sum(-1))                 # log q(z_i|x_i)
        joint.append(torch.logsumexp(w + pairs.sum(1), dim=-1))      # log q^(z_i)
        dims.append(torch.logsumexp(w.unsqueeze(1) + pairs, dim=-1).sum(-1))  # sum_j log q^(z_ij)
    own, joint, dims = torch.cat(own), torch.cat(joint), torch.cat(dims)
    dw = None if log_p is None else dims - log_p.sum(-1)
    return own - joint, joint - dims, dw


def dip_covariance(mu: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
    """Cov_b[mu_b] [L, L] over the B rows of mu (1/B), plus mean_b diag(sigma_b^2) when
    ``sigma`` is given (the aggregate posterior's covariance, DIP-VAE-II)."""
    centred = mu - mu.mean(0, keepdim=True)
    cov = centred.T @ centred / mu.shape[0]
    if sigma is not None:
        cov = cov + torch.diag(sigma.pow(2).mean(0))
    return cov


def dip_penalty(cov: torch.Tensor, lambda_od: float, lambda_d: float) -> torch.Tensor:
    """lambda_od sum_{i != j} C_ij^2 + lambda_d sum_i (C_ii - 1)^2."""
    diag = torch.diagonal(cov)
    off = cov - torch.diag(diag)
    return lambda_od * off.pow(2).sum() + lambda_d * (diag - 1).pow(2).sum()


# ---- the registered decompositions ---------------------------------------------------------------

@dataclass
class TCSettings:
    """beta-TCVAE's weights and its estimator of log q(z)."""

    tc_alpha: float = setting(1.0, "tc: weight alpha of the index-code mutual information", min=0.0)
    tc_beta: float = setting(6.0, "tc: weight beta of the total correlation (Chen et al.'s "
                             "dSprites choice; 1 with alpha = gamma = 1 is the ELBO)", min=0.0)
    tc_gamma: float = setting(1.0, "tc: weight gamma of the dimension-wise KL", min=0.0)
    tc_estimator: str = setting("mss", "tc: minibatch estimate of log q(z): mss (stratified) or "
                                "mws (weighted, log N biased)", choices=ESTIMATORS)


@dataclass
class DIPISettings:
    """DIP-VAE-I's penalty weights (lambda_d = 10 lambda_od, Kumar et al. 2018)."""

    dip_lambda_od: float = setting(10.0, "dip: weight of the off-diagonal covariances", min=0.0)
    dip_lambda_d: float = setting(100.0, "dip: weight of the diagonal's distance to 1", min=0.0)


@dataclass
class DIPIISettings:
    """DIP-VAE-II's penalty weights (lambda_d = lambda_od, Kumar et al. 2018)."""

    dip_lambda_od: float = setting(10.0, "dip: weight of the off-diagonal covariances", min=0.0)
    dip_lambda_d: float = setting(10.0, "dip: weight of the diagonal's distance to 1", min=0.0)


class Decomposition:
    """A change of the KL term: :meth:`extra` is what the loss adds to meanfield's, for one
    latent site of a diagonal Gaussian q(z|x)."""

    settings = NoSettings
    active = True
    name = ""  # its registered name (set by decomposition_for); capabilities come from there

    def __init__(self, settings=None):
        self.s = settings if settings is not None else self.settings()

    def extra(self, q: Normal, p, z: torch.Tensor, n_data: int, kl_weight) -> torch.Tensor:
        """The loss's addition (a 0-d tensor) for a minibatch: q the guide's Normal [B, L], p
        the prior's per-dimension distribution, z [B, L], N, and the KL weight beta_t."""
        raise NotImplementedError

    def side_training(self, latent_dim: int, device=None, seed: int = 0):
        """The parameters this decomposition trains beside the VAE, with their own optimizer
        (an object with ``step(average)``, ``parameters()``, ``state_dict()``,
        ``load_state_dict(state)`` and ``epoch_metrics()``, a dict of its numbers for the
        epoch's row of history.csv; the trainer steps it after each VAE step and checkpoints
        it), or None: the default, a decomposition without parameters."""
        return None


@KL_DECOMPOSITIONS.register("none")
class NoDecomposition(Decomposition):
    """The KL term as the objective computes it."""

    active = False


@KL_DECOMPOSITIONS.register("tc")
class TotalCorrelation(Decomposition):
    """beta-TCVAE: (alpha - 1) MI + (beta - 1) TC + (gamma - 1) DW on top of the KL term."""

    settings = TCSettings

    def extra(self, q, p, z, n_data, kl_weight):
        s = self.s
        mi, tc, dw = tc_terms(z, q.loc, q.scale, p.log_prob(z), n_data, s.tc_estimator)
        per_point = (s.tc_alpha - 1) * mi + (s.tc_beta - 1) * tc + (s.tc_gamma - 1) * dw
        return per_point.sum() * (n_data / z.shape[0]) * kl_weight


class _DIP(Decomposition):
    aggregate = False

    def extra(self, q, p, z, n_data, kl_weight):
        cov = dip_covariance(q.loc, q.scale if self.aggregate else None)
        return n_data * dip_penalty(cov, self.s.dip_lambda_od, self.s.dip_lambda_d)


@KL_DECOMPOSITIONS.register("dip-i")
class DIPVAEI(_DIP):
    """DIP-VAE-I: the penalty on Cov[mu(x)]."""

    settings = DIPISettings


@KL_DECOMPOSITIONS.register("dip-ii")
class DIPVAEII(_DIP):
    """DIP-VAE-II: the penalty on Cov_q(z) = E[diag sigma^2] + Cov[mu]."""

    settings = DIPIISettings
    aggregate = True


@KL_DECOMPOSITIONS.register("factor", compiles=False)
class FactorVAE(Decomposition):
    """FactorVAE: gamma times the discriminator's estimate of the total correlation
    (factor_vae.py); the discriminator is trained beside the VAE. It runs the Python ELBO
    (``compiles=False``): the penalty calls a module outside the traced programs."""

    settings = FactorSettings
    side: FactorTraining | None = None

    def side_training(self, latent_dim, device=None, seed=0):
        self.side = FactorTraining(latent_dim, self.s, device, seed)
        return self.side

    def extra(self, q, p, z, n_data, kl_weight):
        if self.side is None:  # (an objective built outside a trainer: an untrained D)
            self.side_training(z.shape[-1], z.device)
        return self.side.penalty(z, n_data)


def decomposition_for(kl) -> Decomposition | None:
    """The decomposition a ``[model.kl]`` section chooses (its ``decomposition`` and that
    component's settings), or None for ``none`` or a section without the key."""
    name = getattr(kl, "decomposition", "none")
    cls = KL_DECOMPOSITIONS.get(name)
    if not cls.active:
        return None
    made = settings_of(KL_DECOMPOSITIONS, name)
    values = {f: getattr(kl, f) for f in made.__dataclass_fields__}
    decomposition = cls(made(**values))
    decomposition.name = name
    return decomposition


# ---- the mean-field objectives with a decomposition ------------------------------------------------

def _data_frame(site):
    for frame in site["cond_indep_stack"]:
        if frame.name == "data":
            return frame
    raise ConfigError(f"a KL decomposition needs latent site '{site['name']}' inside the "
                      f"plate named \"data\"")


class _Decomposed:
    """Mixin for the mean-field objectives: meanfield's loss plus the decomposition's
    :meth:`Decomposition.extra` for each latent site (the module docstring)."""

    decomposition: Decomposition | None = None

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        loss, surrogate = super()._differentiable_loss_particle(model_trace, guide_trace)
        if self.decomposition is None:
            return loss, surrogate
        if (torch._C._get_tracing_state()
                and not KL_DECOMPOSITIONS.capability(self.decomposition.name, "compiles", True)):
            raise ConfigError(f"the {type(self.decomposition).__name__} KL decomposition "
                              f"cannot run in a compiled (jit-) objective; set elbo = "
                              f"\"meanfield\" (train.fast runs it uncompiled)")
        for name, model_site in model_trace.nodes.items():
            if model_site["type"] != "sample" or model_site["is_observed"]:
                continue
            guide_site = guide_trace.nodes[name]
            q, p, z = guide_site["fn"], model_site["fn"], guide_site["value"]
            base_q, base_p = getattr(q, "base_dist", None), getattr(p, "base_dist", p)
            if not isinstance(base_q, Normal) or z.dim() != 2:
                raise ConfigError(f"a KL decomposition needs a diagonal Gaussian q({name}|x) "
                                  f"with draws [B, L] (one particle), not {type(q).__name__} "
                                  f"with draws {list(z.shape)}")
            frame = _data_frame(guide_site)
            n_data = int(frame.full_size or frame.size)
            weight = guide_site["scale"] / (n_data / z.shape[0])  # beta_t (the plate's N/B out)
            extra = self.decomposition.extra(base_q, base_p, z, n_data, weight)
            surrogate = surrogate + extra
            loss = loss + (extra.detach() if torch._C._get_tracing_state() else torch_item(extra))
        return loss, surrogate


class DecomposedMeanFieldELBO(_Decomposed, MeanFieldELBO):
    """TraceMeanField_ELBO with a KL decomposition (beta-TCVAE, DIP-VAE)."""


class JitDecomposedMeanFieldELBO(_Decomposed, JitTraceMeanFieldELBO):
    """The compiled form of :class:`DecomposedMeanFieldELBO`."""


for _name, _cls in (("meanfield", DecomposedMeanFieldELBO),
                    ("jit-meanfield", JitDecomposedMeanFieldELBO)):
    _entry = OBJECTIVES.entry(_name)
    OBJECTIVES.register(_name, _entry.obj, replace=True,
                        **{**_entry.capabilities, "decomposition": _cls})

__all__ = ["DecomposedMeanFieldELBO", "JitDecomposedMeanFieldELBO", "Decomposition",
           "TotalCorrelation", "DIPVAEI", "DIPVAEII", "decomposition_for", "tc_terms",
           "log_weights", "dip_covariance", "dip_penalty", "TCSettings", "DIPISettings",
           "DIPIISettings", "FactorVAE"]
