"""An ArviZ ``InferenceData`` of a trained VAE's posterior for chosen data points.

Groups (chain = 1; S draws; P points; L latent dimensions; D pixels):

    posterior        one variable per latent site of the guide, e.g. z [chain, draw, point,
                     latent] (a site's further dims are named SITE_dim_0, ...): draws
                     z_s ~ q(z|x_i) of the guide, every site sampled (a discrete one too)
    log_likelihood   one variable per observed site of the model, named as in its trace
                     (x for the built-in models, x_out for a conditional one, whatever a
                     module of your own calls it): SITE [chain, draw, point]  log p(SITE_i | z_s)
    sample_stats     log_weight [chain, draw, point]      log p(x_i, z_s) - log q(z_s|x_i)
                     log_marginal [point], khat [point]   IS log p(x_i) from these S draws, and
                                                          the Pareto k-hat of its weights
                     train_elbo, test_elbo [epoch]        the run's ELBO history
    observed_data    x [point, pixel]                     the data points
    attrs            the run's config (TOML text), objective, pyrovae version

The guide's draws with their importance weights describe the true posterior p(z|x_i) too:
reweight them (``log_weight``) or judge how far q is from it (``khat``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from pyrovae.runtime import memory
from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.files import new_file_mode, writable_dir, write_error


def _groups(run, x: torch.Tensor, points: list[int], draws: int, seed: int) -> dict:
    import xarray as xr

    from pyrovae.config import to_toml
    from pyrovae.evaluation.likelihood import log_mean_exp, weighted_draws
    from pyrovae.evaluation.psis import pareto_khat
    from pyrovae.runtime.traces import eval_mode
    from pyrovae.runtime.rng import seeded

    vae = run.vae
    with seeded(seed), eval_mode(vae):
        # {latent site: [S, P, ...]}, {observed site: [S, P]}, [S, P]
        latents, log_lik, log_w = weighted_draws(vae, x, draws)
    log_w = log_w.double()
    coords = {"chain": [0], "draw": np.arange(draws), "point": np.array(points),
              "pixel": np.arange(x.shape[-1]),
              "epoch": np.array([int(r["epoch"]) for r in run.history], dtype=int)}
    per_draw = ("chain", "draw", "point")
    site_dims = {}
    for name, value in latents.items():
        value = value.expand(draws, len(points), *value.shape[2:])
        latents[name] = value
        extra = value.shape[2:]
        names = ("latent",) if name == "z" and len(extra) == 1 else tuple(
            f"{name}_dim_{i}" for i in range(len(extra)))
        for dim, size in zip(names, extra):
            coords[dim] = np.arange(size)
        site_dims[name] = per_draw + names

    def var(t, dims):
        return xr.DataArray(np.asarray(t.detach().cpu() if torch.is_tensor(t) else t),
                            dims=dims, coords={d: coords[d] for d in dims})

    stats = {"log_weight": var(log_w[None], per_draw),
             "log_marginal": var(log_mean_exp(log_w), ("point",)),
             "khat": var(pareto_khat(log_w.T), ("point",))}
    for key in ("train_elbo", "test_elbo"):
        stats[key] = var([float(r[key]) for r in run.history], ("epoch",))
    from pyrovae._version import __version__
    attrs = {"pyrovae_version": __version__, "objective": run.config.model.elbo,
             "draws": "guide q(z|x); reweight with sample_stats.log_weight",
             "pyrovae_config": to_toml(run.config)}
    return {
        "posterior": xr.Dataset({name: var(v[None], site_dims[name])
                                 for name, v in latents.items()}, attrs=attrs),
        "log_likelihood": xr.Dataset({name: var(lp.expand(draws, len(points))[None], per_draw)
                                      for name, lp in log_lik.items()}, attrs=attrs),
        "sample_stats": xr.Dataset(stats, attrs=attrs),
        "observed_data": xr.Dataset({"x": var(x, ("point", "pixel"))}, attrs=attrs),
    }


def to_inference_data(run, x: torch.Tensor, points: list[int], draws: int = 1000,
                      seed: int = 0):
    """InferenceData (ArviZ 0.x) or DataTree (ArviZ 1.x) for rows x [P, D], whose indices in
    the split are ``points``, with ``draws`` guide draws each."""
    import arviz as az

    if draws < 25:
        raise ConfigError(f"draws = {draws} is too few: use >= 25 (k-hat needs a tail)")
    groups = _groups(run, x, points, draws, seed)
    if hasattr(az, "InferenceData"):  # ArviZ 0.x
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return az.InferenceData(**groups)
    import xarray as xr  # ArviZ 1.x works on xarray's DataTree
    return xr.DataTree.from_dict(groups)


def export_arviz(run, data, path: str | Path, points=range(10), draws: int = 1000,
                 split: str = "test", seed: int = 0) -> Path:
    """Write the InferenceData of ``points`` (indices into the split) as netCDF at ``path``."""
    from pyrovae.evaluation.evaluate import split_data
    from pyrovae.runtime.interface import data_view

    x_all = split_data(data_view(run.vae, data), split)
    points = [int(i) for i in points]
    bad = [i for i in points if not 0 <= i < x_all.shape[0]]
    if not points or bad:
        raise ConfigError(f"points {bad or points} are not indices of the {split} set "
                          f"(0..{x_all.shape[0] - 1})")
    if not isinstance(draws, int) or draws < 25:
        raise ConfigError(f"draws = {draws!r} is too few: use >= 25 (k-hat needs a tail)")
    memory.check_points(run.vae, draws * len(points), f"exporting {draws} draws for "
                        f"{len(points)} points", "lower draws or export fewer points")
    x = x_all[points].to(next(run.vae.parameters()).device)
    idata = to_inference_data(run, x, points, draws, seed)
    path = Path(path)
    if path.suffix != ".nc":
        raise ConfigError(f"--arviz '{path}' must end in .nc (a netCDF file)")
    write_netcdf(idata, path)
    return path


def write_netcdf(idata, path: Path) -> None:
    """``idata.to_netcdf`` into a temporary ``.NAME.XXXXXXXX.tmp`` beside ``path`` (the naming
    of ``files.atomic_write``), renamed over ``path`` when complete, with the mode of the other
    outputs (0666 less the umask): a failure (disk full, read-only folder) leaves an earlier
    ``path`` as it was and is a one-line WriteError."""
    writable_dir(path.parent, "output folder", "choose another --arviz path")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        idata.to_netcdf(tmp, engine="h5netcdf")
        os.chmod(tmp, new_file_mode())  # as every other output (mkstemp makes it 0600)
        os.replace(tmp, path)
    except OSError as err:
        raise write_error(path, err, "free space or make the folder writable, or choose "
                                     "another --arviz path") from err
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
