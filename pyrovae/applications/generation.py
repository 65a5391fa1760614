"""Generation: decoded prior draws, and test images next to their reconstructions.

    sample:       z_i ~ p(z) at temperature T (z = mu + T (z' - mu), interface.tempered_sample),
                  shown as E[x|z_i] ("mean") or a draw x_i ~ p(x|z_i) ("sample"); x: [n, D]
                  With a condition (``--condition``, a model whose ``sample`` takes one, e.g.
                  a CVAE): draws given it, the model's own ``sample(n, ..., condition=c)``
    reconstruct:  x -> mu(x) = E_q[z|x] -> E[x | z = mu(x)]; squared error per pixel and the
                  ELBO's reconstruction term E_q[log p(x|z)] over the test set
    by_class:     the by-class grid of a kind that declares it (registered ``pictures``,
                  e.g. the SSVAE's: one row per class, one style z per column)
"""

from __future__ import annotations

import io

import numpy as np
import torch

from pyrovae.runtime import memory
from pyrovae.config.fields import COUNT, POSITIVE, SEED, Rule, check_number
from pyrovae.runtime.errors import ConfigError
from pyrovae.evaluation import evaluate_elbo
from pyrovae.runtime.files import atomic_write, write_json
from pyrovae.runtime.interface import (CapabilityError, has, require, takes_condition,
                                       tempered_sample)
from pyrovae.runtime.registry import MODEL_KINDS
from pyrovae.reports.plots import save_image_grid, save_reconstructions
from pyrovae.runtime.rng import seeded
from pyrovae.applications.runs import as_run, output_dir, read_data, resolve_data

MODES = ("mean", "sample")
#: columns of the by-class picture (``pyrovae sample --by-class COLUMNS`` uses the same rule)
COLUMNS = Rule(int, 1, max=memory.MAX_GRID_SIDE, note="the number of columns, one style each")


@torch.no_grad()
def draw(vae, n: int, temperature: float = 1.0, mode: str = "mean", seed: int = 0):
    """n decoded prior draws [n, D]: E[x|z] ("mean") or x ~ p(x|z) ("sample")."""
    if mode not in MODES:
        raise ConfigError(f"mode = {mode!r} is not one of: {', '.join(MODES)}")
    if n < 1:
        raise ConfigError(f"n = {n} must be >= 1")
    require(vae, "sample", command="sample")
    if (has(vae, "condition") or not has(vae, "prior") or not hasattr(vae, "decoder")
            or not hasattr(vae, "likelihood")):  # (a hierarchy has no one prior p(z) to draw)
        if mode != "mean":  # only the model's own sample(): decoder means
            raise ConfigError(f"--mode sample needs a VAE with one decoder p(x|z); "
                              f"{type(vae).__name__} samples decoder means only: use --mode mean")
        return vae.sample(n, seed=seed, temperature=temperature)
    with seeded(seed):
        out = vae.decoder(tempered_sample(vae.prior(), n, temperature))
        if mode == "mean":
            return vae.likelihood.mean(out)
        return vae.likelihood(out).sample()


@torch.no_grad()
def draw_given(run, condition, n: int, temperature: float = 1.0, mode: str = "mean",
               seed: int = 0, data: str = "test"):
    """n draws [n, D] given ``condition``: the text of ``--condition`` (read by the model's
    ``condition_value(text, rows)`` when it has one; ``rows()`` gives the examples of
    ``data`` as the model sees them, for a condition that names an example), or a value."""
    vae = run.model
    require(vae, "condition", command="sample --condition")
    if not takes_condition(vae):
        raise CapabilityError(f"sample --condition needs a model that draws given a condition "
                              f"(sample(n, ..., condition=c)); {type(vae).__name__}.sample takes "
                              f"none (a semi-supervised run draws by class: --by-class)")
    if mode != "mean":
        raise ConfigError(f"--mode sample needs a VAE with one decoder p(x|z); "
                          f"{type(vae).__name__} samples decoder means only: use --mode mean")
    reader = getattr(vae, "condition_value", None)
    if callable(reader) and isinstance(condition, str):
        condition = reader(condition, lambda: resolve_data(run, data)[0])
    return vae.sample(n, seed=seed, temperature=temperature, condition=condition)


def sample(run, out=None, n: int = 64, temperature: float = 1.0, mode: str = "mean",
           seed: int = 0, save_npy: bool = False, nrow: int = 8, condition=None,
           data: str = "test") -> dict:
    """Write sample.png (a grid of the first ``memory.MAX_GRID_IMAGES`` (1024) of n decoded
    prior draws), sample.json (statistics of all n) and, with ``save_npy``, sample.npy
    ([n, *input_shape] float32, every draw). Returns the numbers.

    ``condition`` (``--condition``): draw given it instead (:func:`draw_given`; ``data`` is
    where a condition that names an example looks it up)."""
    n, seed, nrow = check_number(n, "n", COUNT), check_number(seed, "seed", SEED), \
        check_number(nrow, "nrow", COUNT)
    temperature = check_number(temperature, "temperature", POSITIVE)
    if mode not in MODES:
        raise ConfigError(f"mode = {mode!r} is not one of: {', '.join(MODES)}")
    run = as_run(run)
    memory.check_points(run.model, n, f"sampling n = {n} draws at once", "lower --n (n)")
    folder = output_dir(run, out)
    if condition is None:
        x = draw(run.model, n, temperature, mode, seed)
    else:
        x = draw_given(run, condition, n, temperature, mode, seed, data)
    shown = min(n, memory.MAX_GRID_IMAGES)
    save_image_grid(x[:shown], run.model.input_shape, folder / "sample.png", nrow=nrow)
    result = {"n": n, "n_shown": shown, "temperature": temperature, "mode": mode, "seed": seed,
              "prior": getattr(getattr(run.config.model, "prior", None), "name", None),
              **({} if condition is None else {"condition": str(condition), "data": data}),
              "mean_pixel": float(x.mean()), "std_over_samples": float(x.std(0).mean()),
              "png": str(folder / "sample.png")}
    if save_npy:
        buf = io.BytesIO()  # written whole or not at all (a full disk leaves no partial file)
        np.save(buf, x.reshape(n, *run.model.input_shape).cpu().numpy())
        atomic_write(folder / "sample.npy", buf.getvalue())
        result["npy"] = str(folder / "sample.npy")
    write_json(folder / "sample.json", result)
    return result


@torch.no_grad()
def reconstruction_error(vae, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Squared error per pixel, averaged per example, of E[x|z=mu(x)] against x [N, D]: [N]."""
    parts = [((vae.reconstruct(xb) - xb) ** 2).mean(1) for xb in x.split(batch_size)]
    return torch.cat(parts)


def reconstruct(run, out=None, n: int = 16, data: str = "test") -> dict:
    """Write reconstruct.png (the first n examples of ``data`` beside their reconstructions,
    at most ``memory.MAX_GRID_IMAGES`` / 2 pairs) and reconstruct.json (squared error and ELBO
    terms over all of ``data``)."""
    n = check_number(n, "n", COUNT)
    run = as_run(run)
    require(run.model, "reconstruct", command="reconstruct")
    folder = output_dir(run, out)
    x, _, _, record = read_data(run, data)
    pairs = min(n, len(x), memory.MAX_GRID_IMAGES // 2)
    shown = save_reconstructions(run.model, x, folder / "reconstruct.png", n=pairs)
    errors = reconstruction_error(run.model, x)
    terms = evaluate_elbo(run.model, x)
    result = {**record, "n_shown": pairs, "n": len(x),
              "mse_shown": shown, "mse": float(errors.mean()),
              "mse_se": float(errors.std() / len(errors) ** 0.5) if len(errors) > 1 else 0.0,
              "log_px_z": terms["log_px_z"], "elbo": terms["elbo"], "kl": terms["kl"],
              "png": str(folder / "reconstruct.png")}
    write_json(folder / "reconstruct.json", result)
    return result


def by_class_picture(run):
    """The by-class picture its kind declares for ``run``'s model (registered ``pictures=
    {"by_class": save(model, path, n_columns, seed)}``), or None."""
    kind = getattr(getattr(run.config, "model", None), "kind", None)
    if kind not in MODEL_KINDS:
        return None
    return (MODEL_KINDS.capability(kind, "pictures") or {}).get("by_class")


def by_class(run, out=None, n_columns: int = 10, seed: int = 0) -> dict:
    """``pyrovae sample RUN --by-class``: write by_class.png (the kind's by-class grid: one
    row per class, one style per column) and by_class.json, for a run (a :class:`pyrovae.Run`
    or its folder) whose kind declares that picture; refused in one line for another."""
    n_columns = check_number(n_columns, "n_columns", COLUMNS)
    seed = check_number(seed, "seed", SEED)
    run = as_run(run)
    save = by_class_picture(run)
    if save is None:
        raise ConfigError(f"--by-class needs a semi-supervised run (a model kind that declares "
                          f"a by-class picture), but '{run.path}' holds a "
                          f"{type(run.model).__name__}")
    folder = output_dir(run, out)
    save(run.model, folder / "by_class.png", n_columns, seed)
    result = {"classes": run.model.num_classes, "columns": n_columns, "seed": seed,
              "png": str(folder / "by_class.png")}
    write_json(folder / "by_class.json", result)
    return result
