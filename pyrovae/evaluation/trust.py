"""The optional numbers of ``pyrovae evaluate`` that check the importance-sampled NLL: AIS
log p(x) (ais.py), a BDMC sandwich on simulated data (bdmc.py) and the approximation and
amortization gaps (gaps.py). ``evaluate_run`` calls :func:`check_trust` before drawing
anything and :func:`trust_evaluation` after the IS NLL; the keys they add to eval.json:

    {split}_ais_nll, _se      -mean AIS log p(x) over the points, se across points
    ais_mc_se                 the Monte Carlo part of that se: sqrt(sum_i se_i^2) / N
    ais_minus_is, _se         mean of AIS log p(x) - IS log p(x), paired over points
    ais_accept, ais           mean HMC acceptance; the settings (steps, chains, init, ...)
    bdmc_lower, bdmc_upper    forward / reverse AIS on bdmc_points simulated points, their
    bdmc_gap, _se             mean gap, bdmc_points, bdmc_seconds
    gap_log_px, gap_amortized_elbo, gap_local_elbo, approximation_gap, amortization_gap
                              (each with _se across points) and ``gaps``: the settings and
                              which estimate of log p(x) they use (AIS when run, else IS)

and the per-point columns ais_log_px, ais_se and the gaps' (gaps.py) to eval_points.csv.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pyrovae.runtime.memory import model_device
from pyrovae.evaluation.ais import AISOptions, ais_log_likelihood, summarize
from pyrovae.evaluation.bdmc import bdmc as run_bdmc
from pyrovae.evaluation.gaps import GapOptions, FreeEncoder, inference_gaps
from pyrovae.evaluation.target import LatentSpace


def check_trust(vae, x: torch.Tensor, ais: AISOptions | None, gaps: GapOptions | None,
                bdmc_points: int | None) -> None:
    """Refuse, in one line and before any drawing, what the model cannot do: discrete latents
    for AIS and the local posteriors, a guide-family start without an encoder; and AIS or BDMC
    work that is beyond the cap or the memory budget over all the points (``check_size``)."""
    if ais is None and gaps is None and bdmc_points is None:
        return
    device = model_device(vae)
    if ais is not None:
        ais.check_size(x.shape[0], device)
    if bdmc_points is not None:
        (ais or AISOptions()).check_size(bdmc_points, device)
    LatentSpace(vae, x[:2])
    if gaps is not None and gaps.family == "guide":
        FreeEncoder(vae, x[:2])


def _paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float | None]:
    d = a - b
    return float(d.mean()), (float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else None)


def trust_evaluation(vae, x: torch.Tensor, split: str, is_log_px: np.ndarray,
                     ais: AISOptions | None = None, gaps: GapOptions | None = None,
                     bdmc_points: int | None = None, batch_size: int = 100,
                     memory_mb: int = 512, seed: int = 0,
                     progress: bool = False) -> tuple[dict, dict, dict]:
    """(eval.json keys, per-point columns, timings) of the module docstring."""
    keys, points, timings = {}, {}, {}
    common = dict(batch_size=batch_size, memory_mb=memory_mb, seed=seed, progress=progress)
    ais_px = ais_se = None
    if ais is not None:
        r = ais_log_likelihood(vae, x, ais, **common)
        ais_px, ais_se = r["log_px"].cpu().numpy(), r["se"].cpu().numpy()
        s = summarize(ais_px, ais_se, "ais")
        diff, diff_se = _paired(ais_px, is_log_px)
        keys.update({f"{split}_ais_nll": -s["ais"], f"{split}_ais_nll_se": s["ais_se"],
                     "ais_mc_se": s["ais_mc_se"], "ais_minus_is": diff,
                     "ais_minus_is_se": diff_se,
                     "ais_accept": float(r["accept"].mean()), "ais": ais.as_dict()})
        points.update({"ais_log_px": ais_px, "ais_se": ais_se})
        timings["ais_seconds"] = r["seconds"]
    if bdmc_points is not None:
        r = run_bdmc(vae, x[:1], bdmc_points, ais or AISOptions(), **common)
        keys.update({k: v for k, v in r.items() if k.startswith("bdmc_") and k != "bdmc_seconds"})
        keys["bdmc_ais"] = (ais or AISOptions()).as_dict()
        timings["bdmc_seconds"] = r["bdmc_seconds"]
    if gaps is not None:
        log_px = ais_px if ais_px is not None else is_log_px
        r = inference_gaps(vae, x, log_px, ais_se, gaps, **common)
        s = r["summary"]
        for key in ("log_px", "amortized_elbo", "local_elbo"):
            keys[f"gap_{key}"], keys[f"gap_{key}_se"] = s[key], s[key + "_se"]
        for key in ("approximation_gap", "amortization_gap"):
            keys[key], keys[key + "_se"] = s[key], s[key + "_se"]
        keys["gaps"] = {**gaps.as_dict(), "points": s["points"],
                        "log_px_estimator": "ais" if ais_px is not None else "is"}
        points.update({k if "_gap" in k else f"gap_{k}": v
                       for k, v in r["per_point"].items() if k != "log_px"})
        timings["gaps_seconds"] = s["seconds"]
    return keys, points, timings
