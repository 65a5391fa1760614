"""``pyrovae evaluate RUN_DIR``: test ELBO, importance-sampled NLL, PSIS k-hat and posterior
diagnostics of a trained run, written to RUN_DIR/eval.json (+ CSV and PNGs).

    pyrovae evaluate RUN_DIR [--nll-samples 5000] [--split test|train] [--points N]
        [--ais-steps T ...] [--bdmc N] [--gaps ...]      (trust_options.py, docs/ais.md)
        [--disentanglement [--disentanglement-points 10000]]   (docs/disentanglement.md)

The KL term's three parts (index-code MI, total correlation, dimension-wise KL) are given for
every model with one diagonal-Gaussian latent; ``--disentanglement`` adds MIG, FactorVAE, DCI,
SAP and BetaVAE for a run trained on a data set with known factors (else one line, exit 2).

It evaluates on the data the run's [data] section names, and only on the data it was trained
on: when they changed since training (their sha256, ``pyrovae.data.fingerprint``, differs
from the one the run recorded), it refuses in one line. A run trained before fingerprints
were recorded is evaluated as it always was, with a one-line note.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pyrovae.config.fields import COUNT, SEED
from pyrovae.evaluation.evaluate import DISENTANGLEMENT_POINTS, MAX_POINTS, NLL_SAMPLES
from pyrovae.cli.common import add_run_argument, open_run
from pyrovae.cli.options import checked, number
from pyrovae.cli.trust_options import add_trust_arguments, trust_settings
from pyrovae.evaluation.disentanglement.dci import MODELS as DCI_MODELS

ROWS = (("elbo", "{split}_elbo", "nats"), ("NLL (K={K})", "{split}_nll", "nats"),
        ("-elbo in bits", "{split}_bpd", "bits/dim"),
        ("NLL in bits", "{split}_nll_bpd", "bits/dim"),
        ("NLL (AIS)", "{split}_ais_nll", "nats"), ("BDMC gap", "bdmc_gap", "nats"),
        ("approximation gap", "approximation_gap", "nats"),
        ("amortization gap", "amortization_gap", "nats"),
        ("accuracy", "{split}_accuracy", ""),
        ("rate (KL)", "rate", "nats"), ("distortion", "distortion", "nats"),
        ("mutual information", "mutual_info", "nats"),
        ("index-code MI ({est})", "index_code_mi", "nats"),
        ("total correlation", "total_correlation", "nats"),
        ("dimension-wise KL", "dimwise_kl", "nats"), ("active units", "active_units", ""),
        ("MIG", "mig", ""), ("FactorVAE score", "factorvae", ""),
        ("DCI disentanglement", "dci_disentanglement", ""),
        ("DCI completeness", "dci_completeness", ""),
        ("DCI informativeness", "dci_informativeness", ""), ("SAP", "sap", ""),
        ("BetaVAE score", "betavae", ""),
        ("k-hat > 0.7", "khat_share_above_0_7", "share of points"),
        ("time", "eval_seconds", "s"), ("peak memory", "peak_rss_mb", "MiB"))


def format_table(result: dict) -> str:
    """The headline numbers as a two-column text table; a number with a standard error shows
    it to 2 significant digits and the number to the same decimal place."""
    from pyrovae.reports.numbers import format_estimate

    split, lines = result["split"], []
    for label, key, unit in ROWS:
        key = key.format(split=split)
        value = result.get(key)
        if value is None:  # e.g. no Gaussian encoder: no posterior diagnostics
            continue
        se = result.get(key + "_se")
        shown = (format_estimate(value, se) if isinstance(value, float) or se is not None
                 else str(value))
        if key == "active_units":
            shown += f" of {result['latent_dim']}"
            layers = result.get("layers") or ()  # a model with several latent layers
            if layers:
                shown += " (" + ", ".join(f"{s}: {result[f'active_units_{s}']} of "
                                          f"{result[f'latent_dim_{s}']}" for s in layers) + ")"
        label = label.format(K=result["nll_samples"], est=result.get("decomposition_estimator"))
        lines.append(f"{label:<22}{shown} {unit}".rstrip())
    return "\n".join([f"{split} set, {result['num_points']} points"] + lines)


#: what to do when a run's data changed since training
FIX = ("restore the data it was trained on (the same file and [data] settings), or train a "
       "new run on these data")


def data_note(result: dict, run, data: str | None = None) -> str | None:
    """The one-line note a command prints about its data (``result``'s ``data_sha256`` and
    ``same_data_as_training``, see pyrovae.evaluation.evaluate.data_record): other data than
    the run's (``data``: the --data spec), or a run too old to have a fingerprint; None when
    the data are the run's own, checked."""
    from pyrovae.data.fingerprint import short

    same, sha = result.get("same_data_as_training"), result.get("data_sha256")
    if same is None and sha:
        return (f"pyrovae: note: run '{run.path}' records no data fingerprint (trained before "
                f"pyrovae recorded one), so its data could not be checked against the data "
                f"read (sha256 {short(sha)})")
    if same is False:
        from pyrovae.evaluation.evaluate import recorded_data_sha256

        return (f"pyrovae: note: other data: '{data}' (sha256 {short(sha)}) are not the data "
                f"run '{run.path}' was trained on (sha256 "
                f"{short(recorded_data_sha256(run))}); same_data_as_training = false")
    return None


def print_data_note(result: dict, run, data: str | None = None) -> None:
    """Print :func:`data_note` (when there is one) on stderr, so stdout stays the result."""
    note = data_note(result, run, data)
    if note:
        print(note, file=sys.stderr)


def _evaluate(args) -> int:
    import torch

    from pyrovae.runtime import distributed
    from pyrovae.data import load_dataset
    from pyrovae.evaluation import evaluate_run
    from pyrovae.evaluation.evaluate import check_run_data
    from pyrovae.reports import write_evaluation

    trust = trust_settings(args)  # AIS, BDMC, gaps: refused in one line before anything runs
    context = distributed.init(args.device)  # under torchrun: the points are shared out
    args.device = str(context.device_for(torch.device(args.device)))  # cuda: cuda:LOCAL_RANK
    run = open_run(args)
    data = load_dataset(run.config.data)
    if args.disentanglement and getattr(data, "factors", None) is None:
        from pyrovae.evaluation.evaluate import FACTORS_NEEDED
        from pyrovae.runtime.errors import ConfigError
        raise ConfigError(f"--disentanglement {FACTORS_NEEDED}; run '{run.path}' was trained "
                          f"on data.name = '{run.config.data.name}', which has none")
    record = check_run_data(run, data, FIX)  # the data it was trained on, or one line
    result = evaluate_run(run, data, nll_samples=args.nll_samples, split=args.split,
                          max_points=args.points, seed=args.seed, progress=not args.quiet,
                          batch_size=args.batch_size, memory_mb=args.memory_mb,
                          sha=record["data_sha256"], **trust,
                          disentanglement=(args.disentanglement_points if args.disentanglement
                                           else None), dci_model=args.dci_model)
    if not context.writer:  # data-parallel: rank 0 writes and reports for all
        return 0
    out = Path(args.out) if args.out else run.path
    out.mkdir(parents=True, exist_ok=True)
    files = write_evaluation(result, out)
    print_data_note(result, run)
    print(format_table(result))
    print(f"written: {', '.join(str(f) for f in files)}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="NLL, ELBO, k-hat and posterior diagnostics of a run")
    add_run_argument(p)
    p.add_argument("--nll-samples", type=number("--nll-samples", NLL_SAMPLES), default=5000,
                   metavar="K",
                   help="importance samples per point for log p(x) (default 5000)")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--points", type=number("--points", MAX_POINTS), default=None, metavar="N",
                   help="evaluate only the first N points (default: all)")
    p.add_argument("--seed", type=number("--seed", SEED), default=0,
                   help="seed of the draws (default 0)")
    p.add_argument("--batch-size", type=number("--batch-size", COUNT), default=100,
                   help="points per batch (default 100)")
    p.add_argument("--memory-mb", type=number("--memory-mb", COUNT), default=512,
                   help="memory budget of one chunk of samples (default 512)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", help="output folder (default: the run folder)")
    p.add_argument("--disentanglement", action="store_true",
                   help="also MIG, FactorVAE, DCI, SAP and BetaVAE scores of the posterior means "
                        "(a run on a data set with known factors: dsprites, dsprites-small)")
    p.add_argument("--disentanglement-points",
                   type=number("--disentanglement-points", DISENTANGLEMENT_POINTS),
                   default=10_000, metavar="N",
                   help="examples for the disentanglement scores (default 10000)")
    p.add_argument("--dci-model", choices=DCI_MODELS, default="gbt",
                   help="DCI's classifiers: gradient-boosted trees as disentanglement_lib "
                        "(default), or a random forest, ~25x faster")
    add_trust_arguments(p)
    p.set_defaults(func=checked(_evaluate))
