"""Exploring the latent space: interpolation, traversals and 2-D maps.

Posterior means mu(x) = E_q[z|x] [N, L] are the coordinates of the data in latent space.

    interpolate   z_t between mu(x_a) and mu(x_b), t in [0, 1]:
                    linear     z_t = (1 - t) z_a + t z_b
                    spherical  slerp in the prior's standard coordinates u = (z - m) / s
                               (Gaussian priors only): u_t = sin((1-t) w)/sin w u_a +
                               sin(t w)/sin w u_b, cos w = <u_a, u_b> / (|u_a| |u_b|);
                               keeps |u_t| near sqrt(L), where N(0, I) puts its mass
    traverse      rows z = mu(x) + delta e_d, delta in [-range, range] (in prior standard
                  deviations), one row per dimension d, dimensions ranked by their KL
                  E_x KL(q(z_d|x) || p(z_d)) (Gaussian priors) or else by their activity
                  Var_x mu_d(x) (Burda et al. 2015; "active" when > 0.01)
    latent_map    mu(x) in 2-D: z itself when L = 2, else PCA (or the two top-KL dimensions);
                  for L = 2 also the decoded manifold E[x|z] over a grid of z
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pyro import distributions as dist
from torch.distributions import Normal, kl_divergence

from pyrovae.config.fields import INTEGER, POSITIVE, SIZE, Rule, check_number
from pyrovae.runtime.errors import ConfigError, DataError
from pyrovae.runtime.files import write_csv, write_json
from pyrovae.runtime.memory import MAX_GRID_SIDE
from pyrovae.runtime.interface import has, latent_condition, require
from pyrovae.reports.applications import save_labelled_grid, save_latent_scatter
from pyrovae.reports.plots import save_image_grid
from pyrovae.applications.runs import as_run, output_dir, read_data

ACTIVE = 0.01            # activity threshold of an "active" unit (Burda et al. 2015)
PROJECTIONS = ("pca", "kl")
#: the arguments' rules (the CLI's options use the same, pyrovae/cli/options.py): a picture
#: has at most MAX_GRID_SIDE (100) columns (steps) or rows (dimensions), the manifold 100 x 100
STEPS = Rule(int, 2, max=MAX_GRID_SIDE, note="points on the path, ends included: one column each")
ROWS = Rule(int, 1, max=MAX_GRID_SIDE, note="one row of the picture each")
GRID = Rule(int, 1, max=MAX_GRID_SIDE, note="the manifold is GRID x GRID images")


@torch.no_grad()
def encode_all(vae, x: torch.Tensor, batch_size: int = 1000):
    """Posterior means and standard deviations of every row of x [N, D]: ([N, L], [N, L])."""
    parts = [vae.encode(xb) for xb in x.split(batch_size)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def gaussian_prior(vae):
    """(loc [L], scale [L]) when p(z) is a diagonal Gaussian, else None."""
    if not has(vae, "prior"):
        return None
    prior = vae.prior()
    if isinstance(prior, dist.Independent) and isinstance(prior.base_dist, Normal):
        loc, scale = prior.base_dist.loc, prior.base_dist.scale
        size = prior.event_shape
        return loc.expand(size).detach(), scale.expand(size).detach()
    return None


@torch.no_grad()
def latent_ranking(vae, x: torch.Tensor) -> dict:
    """Per-dimension statistics over the rows of x [N, D].

    Returns ``activity`` [L] (Var_x mu_d(x)), ``kl`` [L] (E_x KL(q(z_d|x) || p(z_d)), None
    unless the prior is a diagonal Gaussian), ``order`` (dimensions, most informative
    first: by KL when known, else by activity) and ``order_by``.
    """
    mu, sd = encode_all(vae, x)
    activity = mu.var(0) if len(mu) > 1 else torch.zeros(mu.shape[1], device=mu.device)
    gauss = gaussian_prior(vae)
    kl = None
    if gauss is not None:
        kl = kl_divergence(Normal(mu, sd), Normal(*gauss)).mean(0)
    key = kl if kl is not None else activity
    return {"activity": activity, "kl": kl, "order": torch.argsort(key, descending=True),
            "order_by": "kl" if kl is not None else "activity"}


def interpolation_path(za: torch.Tensor, zb: torch.Tensor, steps: int, kind: str = "linear",
                       loc=None, scale=None) -> torch.Tensor:
    """``steps`` points [steps, L] from za [L] to zb [L] (both included)."""
    if steps < 2:
        raise ConfigError(f"steps = {steps} must be >= 2 (the two endpoints)")
    t = torch.linspace(0, 1, steps, device=za.device, dtype=za.dtype)[:, None]
    if kind == "linear":
        return (1 - t) * za + t * zb
    if kind != "spherical":
        raise ConfigError(f"interpolation kind {kind!r} is not linear or spherical")
    loc = torch.zeros_like(za) if loc is None else loc
    scale = torch.ones_like(za) if scale is None else scale
    ua, ub = (za - loc) / scale, (zb - loc) / scale
    cos = (ua @ ub) / (ua.norm() * ub.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1, 1))
    if torch.sin(omega) < 1e-6:  # (anti)parallel: the great circle is not unique
        u = (1 - t) * ua + t * ub
    else:
        u = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / torch.sin(omega)
    path = loc + scale * u
    path[0], path[-1] = za, zb  # exact endpoints despite rounding
    return path


def _check_index(i: int, n: int, name: str) -> int:
    if not -n <= i < n:
        raise DataError(f"{name} = {i} is out of range: the data have {n} examples "
                        f"(indices 0..{n - 1})")
    return i % n


def _label(y, i):
    return None if y is None else int(y[i])


@torch.no_grad()
def interpolate(run, out=None, a: int = 0, b: int = 1, steps: int = 10,
                data: str = "test") -> dict:
    """Write interpolate.png (rows: linear, and spherical for a Gaussian prior; columns:
    x_a, the decoded path, x_b) and interpolate.json. Returns the numbers."""
    a, b = check_number(a, "a", INTEGER), check_number(b, "b", INTEGER)
    steps = check_number(steps, "steps", STEPS)
    run = as_run(run)
    require(run.vae, "encoder", "decoder", command="interpolate")
    vae, folder = run.vae, output_dir(run, out)
    x, y, _, record = read_data(run, data)
    a, b = _check_index(a, len(x), "--a"), _check_index(b, len(x), "--b")
    mu = vae.encode(x[[a, b]])[0]
    cond = latent_condition(vae, x[a:a + 1])  # e.g. the SSVAE decodes with x_a's class
    gauss = gaussian_prior(vae)
    kinds = ["linear"] + (["spherical"] if gauss is not None else [])
    rows, result_paths = [], {}
    for kind in kinds:
        path = interpolation_path(mu[0], mu[1], steps, kind,
                                  *(gauss if gauss is not None else (None, None)))
        rows.append(torch.cat([x[a:a + 1], vae.decode(path, **cond), x[b:b + 1]]))
        u = path if gauss is None else (path - gauss[0]) / gauss[1]
        result_paths[kind] = {"norms": [round(float(v), 4) for v in u.norm(dim=1)],
                              "z": path.cpu().tolist()}
    cols = ["x_a"] + [f"{t:.2f}" for t in np.linspace(0, 1, steps)] + ["x_b"]
    title = (f"interpolation between test #{a} (label {_label(y, a)}) and #{b} "
             f"(label {_label(y, b)})")
    save_labelled_grid(torch.cat(rows), vae.input_shape, steps + 2, kinds,
                       folder / "interpolate.png", title, cols)
    result = {**record, "a": a, "b": b, "label_a": _label(y, a), "label_b": _label(y, b),
              "steps": steps, "kinds": kinds, "distance": float((mu[0] - mu[1]).norm()),
              "typical_norm": math.sqrt(mu.shape[1]), "paths": result_paths,
              "condition": {k: v.tolist() for k, v in cond.items()} or None,
              "png": str(folder / "interpolate.png")}
    write_json(folder / "interpolate.json", result)
    return result


@torch.no_grad()
def traverse(run, out=None, dims=None, span: float = 3.0, steps: int = 9, index: int = 0,
             top: int = 10, data: str = "test") -> dict:
    """Write traverse.png (one row per latent dimension: mu(x_index) with that dimension moved
    by -span..span prior standard deviations) and traverse.json (ranking of all dimensions,
    active units, the mean pixel change along each row). Returns the numbers. At most
    ``MAX_GRID_SIDE`` (100) rows (``top``, ``dims``) and columns (``steps``)."""
    span, steps = check_number(span, "span", POSITIVE), check_number(steps, "steps", STEPS)
    index, top = check_number(index, "index", INTEGER), check_number(top, "top", ROWS)
    if dims is not None:
        dims = [check_number(d, "dims", SIZE) for d in dims]
        if len(dims) > MAX_GRID_SIDE:
            raise ConfigError(f"dims lists {len(dims)} dimensions: the picture shows at most "
                              f"{MAX_GRID_SIDE} rows; list fewer")
    run = as_run(run)
    require(run.vae, "encoder", "decoder", command="traverse")
    vae, folder = run.vae, output_dir(run, out)
    x, y, _, record = read_data(run, data)
    index = _check_index(index, len(x), "--index")
    rank = latent_ranking(vae, x)
    latent = rank["activity"].numel()
    if dims:
        bad = [d for d in dims if not 0 <= d < latent]
        if bad:
            raise ConfigError(f"--dims {bad} out of range: the latent has {latent} dimensions "
                              f"(0..{latent - 1})")
        dims = list(dims)
    else:
        dims = rank["order"][:top].tolist()
    gauss = gaussian_prior(vae)
    unit = gauss[1] if gauss is not None else torch.ones(latent, device=x.device)
    centre = vae.encode(x[index:index + 1])[0][0]
    cond = latent_condition(vae, x[index:index + 1])  # e.g. the SSVAE holds the class fixed
    offsets = torch.linspace(-span, span, steps, device=x.device)
    base = vae.decode(centre[None], **cond)
    rows, changes = [], []
    for d in dims:
        z = centre.repeat(steps, 1)
        z[:, d] = centre[d] + offsets * unit[d]
        images = vae.decode(z, **cond)
        rows.append(images)
        changes.append(float((images - base).abs().mean()))
    key = rank["kl"] if rank["kl"] is not None else rank["activity"]
    labels = [f"z{d} {rank['order_by']}={float(key[d]):.2f}" for d in dims]
    cols = [f"{v:+.1f}" for v in offsets.tolist()]
    save_labelled_grid(torch.cat(rows), vae.input_shape, steps, labels, folder / "traverse.png",
                       f"traversals around test #{index} (label {_label(y, index)}), "
                       f"offsets in prior std", cols)
    result = {**record, "index": index, "label": _label(y, index), "span": span,
              "steps": steps, "dims": dims, "order_by": rank["order_by"],
              "mean_abs_change": changes,
              "condition": {k: v.tolist() for k, v in cond.items()} or None,
              "active_units": int((rank["activity"] > ACTIVE).sum()),
              "ranking": [{"dim": int(d), "kl": None if rank["kl"] is None else
                           float(rank["kl"][d]), "activity": float(rank["activity"][d])}
                          for d in rank["order"]],
              "png": str(folder / "traverse.png")}
    write_json(folder / "traverse.json", result)
    return result


def project_2d(mu: torch.Tensor, method: str = "pca", order=None):
    """Posterior means mu [N, L] -> (points [N, 2], axis names, explained variance ratio [2]).

    L = 2: mu itself. ``pca``: coordinates on the two leading principal axes of the centred
    means. ``kl``: the two dimensions first in ``order`` (see :func:`latent_ranking`).
    """
    mu = mu.double()
    total = mu.var(0).sum().clamp_min(1e-300)
    if mu.shape[1] == 2:
        return mu, ("z0", "z1"), (mu.var(0) / total).tolist()
    if method == "pca":
        centred = mu - mu.mean(0)
        _, s, vh = torch.linalg.svd(centred, full_matrices=False)
        ratio = (s[:2] ** 2 / (s ** 2).sum().clamp_min(1e-300)).tolist()
        return centred @ vh[:2].T, ("PC1", "PC2"), ratio
    if method == "kl":
        if order is None:
            raise ConfigError("projection 'kl' needs the dimension order from latent_ranking")
        d0, d1 = int(order[0]), int(order[1])
        return mu[:, [d0, d1]], (f"z{d0}", f"z{d1}"), (mu[:, [d0, d1]].var(0) / total).tolist()
    raise ConfigError(f"projection {method!r} is not one of: {', '.join(PROJECTIONS)}")


def centroid_accuracy(xy: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of points [N, 2] nearest to their own class's centroid (class separation)."""
    classes = labels.unique()
    centroids = torch.stack([xy[labels == c].mean(0) for c in classes])
    nearest = classes[torch.cdist(xy, centroids).argmin(1)]
    return float((nearest == labels).double().mean())


@torch.no_grad()
def manifold_grid(vae, mu: torch.Tensor, size: int = 20) -> torch.Tensor:
    """Decoded E[x|z] [size * size, D] over a grid in a 2-D latent, the first latent axis
    left to right and the second bottom to top: Gaussian quantiles 0.05..0.95 of the prior
    (Kingma & Welling 2014, fig. 4), else the 1st..99th percentiles of the means mu [N, 2]."""
    gauss = gaussian_prior(vae)
    if gauss is not None:
        q = Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, size, device=mu.device))
        axes = [gauss[0][i] + gauss[1][i] * q for i in range(2)]
    else:
        lo, hi = torch.quantile(mu, 0.01, dim=0), torch.quantile(mu, 0.99, dim=0)
        axes = [torch.linspace(float(lo[i]), float(hi[i]), size, device=mu.device)
                for i in range(2)]
    z1, z0 = torch.meshgrid(axes[1].flip(0), axes[0], indexing="ij")
    return vae.decode(torch.stack([z0.reshape(-1), z1.reshape(-1)], dim=1))


@torch.no_grad()
def latent_map(run, out=None, projection: str = "pca", n: int = 0, grid: int = 20,
               data: str = "test") -> dict:
    """Write latent_map.png (posterior means of ``data`` in 2-D, coloured by label),
    latent_map.csv (index, label, u, v), latent_map.json and, for a 2-D latent,
    latent_manifold.png (the decoded grid, ``grid`` x ``grid`` <= 100 x 100 images). ``n`` > 0
    uses the first n examples."""
    n, grid = check_number(n, "n", SIZE), check_number(grid, "grid", GRID)
    if projection not in PROJECTIONS:
        raise ConfigError(f"projection {projection!r} is not one of: {', '.join(PROJECTIONS)}")
    run = as_run(run)
    require(run.vae, "encoder", command="latent-map")
    vae, folder = run.vae, output_dir(run, out)
    x, y, _, record = read_data(run, data)
    if n:
        x, y = x[:n], None if y is None else y[:n]
    if len(x) < 2:
        raise DataError(f"latent_map needs at least 2 examples, got {len(x)}")
    mu, _ = encode_all(vae, x)
    order = latent_ranking(vae, x)["order"] if projection == "kl" else None
    xy, names, ratio = project_2d(mu, projection, order)
    how = "the latent itself" if mu.shape[1] == 2 else f"{projection} of L={mu.shape[1]}"
    labels = None if y is None else y.cpu().numpy()
    save_latent_scatter(xy.cpu().numpy(), labels, folder / "latent_map.png",
                        f"posterior means of {len(x)} '{data}' examples ({how})", names)
    write_csv(folder / "latent_map.csv",
              [{"index": i, "label": "" if y is None else int(y[i]), "u": float(p[0]),
                "v": float(p[1])} for i, p in enumerate(xy.cpu())])
    result = {**record, "n": len(x), "latent_dim": mu.shape[1],
              "projection": "identity" if mu.shape[1] == 2 else projection, "axes": list(names),
              "variance_ratio": ratio,
              "centroid_accuracy_2d": None if y is None else centroid_accuracy(xy, y.to(xy.device)),
              "png": str(folder / "latent_map.png")}
    if mu.shape[1] == 2 and has(vae, "decoder") and not has(vae, "condition"):
        save_image_grid(manifold_grid(vae, mu, grid), vae.input_shape,
                        folder / "latent_manifold.png", nrow=grid, scale=2.0)
        result["manifold_png"] = str(folder / "latent_manifold.png")
    write_json(folder / "latent_map.json", result)
    return result
