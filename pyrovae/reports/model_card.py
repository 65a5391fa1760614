"""The model card of a run: ``RUN/README.md``, written at the end of every training run (and by
``pyrovae export RUN --weights DIR/model.safetensors`` beside the weights, as DIR/README.md).

It says, in Markdown that a person reads and a model hub shows:

- what was trained: the model kind, its latent size, its parameter count, the objective and
  every setting of the [model] section (the components: network, prior, likelihood, ...);
- on which data: the data set, its split sizes and the sha256 fingerprint of the data
  (``pyrovae.data.fingerprint``) that metrics.json records;
- the headline numbers of metrics.json (test ELBO with its standard error, bits per dimension,
  ...; with ``pyrovae evaluate``'s eval.json beside them, its importance-sampled NLL), each
  with the command that produced it and the one that recomputes it;
- how to load it (``pyrovae.load``) and use it (the commands), and how to export its weights.

A YAML front matter holds the same numbers exactly (``repr`` of the floats), for programs::

    ---
    library_name: pyrovae
    tags: [pyrovae, pyro, variational-autoencoder, KIND]
    pyrovae:
      kind: "KIND"
      ...
      metrics:
        test_elbo: -34.10090391561389
    ---
    <!-- pyrovae model card ... -->

The comment after it (``pyrovae.runs.folder.MODEL_CARD_MARK``) tells a card pyrovae wrote
from a README.md of yours: :func:`write_model_card` never replaces one without it.
"""

from __future__ import annotations

import json
import math
import shlex
import warnings
from pathlib import Path

import torch

from pyrovae._version import __version__
from pyrovae.reports.numbers import format_estimate
from pyrovae.runs.folder import MODEL_CARD, MODEL_CARD_MARK, RunFolderWarning, is_model_card
from pyrovae.runtime.files import atomic_write
from pyrovae.runtime.registry import MODEL_KINDS

#: metrics.json's headline numbers: key -> (what it is, the key of ``pyrovae evaluate``'s
#: eval.json that recomputes it from the weights, or None when only training gives it)
HEADLINE = {
    "test_elbo": ("test ELBO (nats per example, higher is better)", "`test_elbo`"),
    "test_bpd": ("test -ELBO in bits per dimension (lower is better)", "`test_bpd`"),
    "test_log_px_z": ("test reconstruction term E_q[log p(x|z)] (nats)",
                      "`distortion` (its negative)"),
    "test_kl": ("test KL(q(z|x) || p(z)), the rate (nats)", "`rate`"),
    "test_accuracy": ("test accuracy of the classifier q(y|x)", "`test_accuracy`"),
    "val_accuracy": ("validation accuracy of the classifier q(y|x)", None),
    "train_elbo": ("train ELBO, average over the last epoch (nats per example)", None),
    "reconstruction_mse": ("mean squared error of reconstructions.png", None),
}
#: metrics.json's "num_" keys that are not split sizes
NOT_SIZES = ("num_particles",)
#: eval.json's numbers that a card shows when the run was evaluated
EVALUATION = {
    "test_nll": "test NLL, importance-sampled with K draws (nats, lower is better)",
    "test_nll_bpd": "test NLL in bits per dimension",
}


def _q(path) -> str:
    """A path as it goes into a shell command."""
    return shlex.quote(str(path))


def _cell(text: str) -> str:
    """Text for a Markdown table cell (a ``|`` would end the cell)."""
    return text.replace("|", "\\|")


def _number(value) -> str:
    """A number as the front matter holds it: exact (JSON), or a YAML NaN/infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    return json.dumps(value)


def _shown(value) -> str:
    """A config value as the card's tables show it: a table as ``name (key=value, ...)``."""
    if isinstance(value, dict):
        head = str(value.get("name", ""))
        rest = ", ".join(f"{k}={_shown(v)}" for k, v in value.items() if k != "name")
        return f"{head} ({rest})" if head and rest else head or rest
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def parameter_count(model: torch.nn.Module) -> int:
    """The number of trained values of ``model`` (each shared tensor once)."""
    return sum(p.numel() for p in model.parameters())


def _latent_size(model_config: dict) -> str:
    for key in ("latent_dim", "stochastic"):
        if key in model_config:
            return _shown(model_config[key])
    return "see config.toml"


def _evaluation(folder: Path | None) -> dict:
    """The numbers of the run's eval.json (``pyrovae evaluate``) on the test set, if any."""
    path = folder / "eval.json" if folder is not None else None
    if path is None or not path.is_file():
        return {}
    try:
        result = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    if not isinstance(result, dict) or result.get("split") != "test":
        return {}
    return result


def model_card(run, folder: str | Path | None = None, weights: str | Path | None = None) -> str:
    """The model card (module docstring) of ``run`` (a :class:`pyrovae.Run`), for the folder
    ``folder`` (default: the run's own) that it describes; ``weights``: the weights file of an
    export (then ``folder`` is the export's)."""
    folder = Path(folder) if folder is not None else Path(run.path)
    config, metrics = run.config, dict(run.metrics or {})
    model = config.to_dict()["model"]
    kind = config.model.kind
    params = parameter_count(run.model)
    sha = metrics.get("data_sha256") or getattr(run, "data_sha256", None) or ""
    data = config.data
    consent = MODEL_KINDS.capability(kind, "consent") is not None
    trust, trust_py = (" --trust-module", ", trust_module=True") if consent else ("", "")
    where = _q(folder)
    evaluation = _evaluation(Path(run.path) if run.path is not None else None)
    shown_metrics = {k: metrics[k] for k in list(HEADLINE) + [k for k in metrics if (
        k.startswith(("test_", "val_")) and not k.endswith("_se") and k not in HEADLINE)]
        if isinstance(metrics.get(k), (int, float)) and not isinstance(metrics.get(k), bool)}

    front = ["---", "library_name: pyrovae", "tags:", "- pyrovae", "- pyro",
             "- variational-autoencoder", f"- {json.dumps(kind)}", "pyrovae:",
             f"  kind: {json.dumps(kind)}", f"  parameters: {params}",
             f"  data: {json.dumps(data.name)}", f"  data_sha256: {json.dumps(sha)}",
             f"  pyrovae_version: {json.dumps(__version__)}", "  metrics:"]
    front += [f"    {key}: {_number(value)}" for key, value in shown_metrics.items()]
    if not shown_metrics:
        front[-1] += " {}"
    if evaluation:
        front.append("  evaluation:")
        front += [f"    {key}: {_number(evaluation[key])}" for key in
                  ("nll_samples", "num_points", *EVALUATION) if key in evaluation]
    front.append("---")

    title = f"# {folder.name or 'run'}: a {kind} model of {data.name}, trained with pyrovae"
    lines = [*front, f"{MODEL_CARD_MARK}: written by pyrovae {__version__}; `pyrovae train "
             f"--force` and `pyrovae export --force` replace it -->", "", title, ""]
    lines += ["## What was trained", "", "| | |", "|---|---|",
              f"| model kind | `{kind}` |", f"| latent size | {_latent_size(model)} |",
              f"| parameters | {params:,} |",
              f"| objective | `{_shown(model.get('elbo', '?'))}` ELBO, "
              f"{_shown(model.get('objective', {}))} |",
              f"| epochs, steps | {metrics.get('epochs', config.train.epochs)}, "
              f"{metrics.get('steps', '?')} |", ""]
    lines += ["Every setting of the model (the components), as config.toml's [model] holds it:",
              "", "| setting | value |", "|---|---|"]
    lines += [f"| `{key}` | {_cell(_shown(value))} |" for key, value in model.items()]
    lines += [""]

    lines += ["## Data", "", "| | |", "|---|---|", f"| data set | `{data.name}` |"]
    if data.path:
        lines.append(f"| file | `{data.path}` |")
    lines += [f"| {key.removeprefix('num_')} examples | {value} |" for key, value in
              metrics.items() if key.startswith("num_") and key not in NOT_SIZES
              and isinstance(value, int)]
    lines += [f"| binarization | {data.binarize} |", f"| data sha256 | `{sha or 'not recorded'}` |",
              "", "The sha256 is the fingerprint of the data trained on "
              "(`pyrovae.data.fingerprint`); every command on the run refuses data that do not "
              "match it.", ""]

    lines += ["## Numbers", "", "| number | value | produced by | recomputed by |",
              "|---|---|---|---|"]
    train_cmd = f"`pyrovae train {_q(folder / 'config.toml')} --out NEW_RUN`"
    for key, value in shown_metrics.items():
        what, again = HEADLINE.get(key, (key, None))
        shown = format_estimate(value, metrics.get(key + "_se"), pm="±") \
            if isinstance(value, float) else str(value)
        redo = (f"`pyrovae evaluate {where}{trust}`: eval.json's {again}" if again
                else "retraining")
        lines.append(f"| {_cell(what)} (`{key}`) | {shown} | training | {redo} |")
    for key, what in EVALUATION.items():
        if key in evaluation:
            k = evaluation.get("nll_samples")
            shown = format_estimate(evaluation[key], evaluation.get(key + "_se"), pm="±")
            cmd = f"`pyrovae evaluate {_q(run.path)} --nll-samples {k}{trust}`"
            lines.append(f"| {_cell(what.replace('K draws', f'K={k} draws'))} (`{key}`) | "
                         f"{shown} | "
                         f"{cmd} | {cmd} |")
    lines += ["", f"Training produced the numbers in metrics.json; {train_cmd} trains the same "
              f"config (seed {config.train.seed}) again.", ""]

    lines += ["## Use it", "", "```python", "import pyrovae", "",
              f"run = pyrovae.load({json.dumps(str(folder))}{trust_py})",
              "model = run.model  # the trained PyroModule", "```", "", "```sh",
              f"pyrovae evaluate {where}{trust}", f"pyrovae sample {where}{trust} --n 64"]
    if weights is None:
        lines.append(f"pyrovae export {where}{trust} --weights "
                     f"{_q(str(folder) + '-weights/model.safetensors')}")
    lines += ["```", ""]
    if weights is not None:
        lines += [f"This folder holds the weights as `{Path(weights).name}` (safetensors: the "
                  f"model's state dict under its own names, read by `safetensors.torch."
                  f"load_file`) and the run's `config.toml`; `pyrovae.load` rebuilds the model "
                  f"from the two. It has no optimizer state: it cannot be resumed, only used.",
                  ""]
    else:
        lines += ["`pyrovae export ... --weights` writes the weights as one safetensors file "
                  "with config.toml and this card beside it: a folder to share, which "
                  "`pyrovae.load` opens.", ""]
    return "\n".join(lines)


def write_model_card(run, folder: str | Path | None = None) -> Path | None:
    """Write :func:`model_card` to ``folder``/README.md (default: the run's folder) and return
    its path; a README.md that pyrovae did not write is left as it is (with a warning), and
    None returned."""
    folder = Path(folder) if folder is not None else Path(run.path)
    path = folder / MODEL_CARD
    if path.exists() and not is_model_card(path):
        warnings.warn(f"'{path}' is not a pyrovae model card; left as it is (the run's card "
                      f"was not written)", RunFolderWarning, stacklevel=2)
        return None
    atomic_write(path, model_card(run, folder))
    return path
