"""``pyrovae compare``: train and evaluate every combination of config variations.

    pyrovae compare CONFIG.toml --vary elbo=trace,meanfield,iwae+num_particles=5 \\
        --vary prior=normal,vamp --seeds 2 [--set epochs=5] [--skip-invalid] [--resume]

Writes OUT/compare.csv (one row per run), compare.md, compare.png and one run folder per
combination and seed (default OUT: runs/compare-<config name>). See docs/compare.md. With
``--set tracking=mlflow`` every run is an MLflow run of one experiment, its row of compare.csv
among its metrics (docs/tracking.md).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from pyrovae.config.fields import INTEGER, Rule
from pyrovae.cli.common import add_common
from pyrovae.cli.options import checked, number
from pyrovae.evaluation.disentanglement.dci import MODELS as DCI_MODELS

#: compare's options are integers (NaN, inf, 2.5 refused here); their lower bounds are
#: checked, with their own messages, by ``experiments.Settings`` and ``plan`` (the API), and
#: the seeds' upper bound here: each seed is one run of every combination
SEEDS = Rule(int, max=1000, note="runs per combination")


def _command_line(args, out: Path) -> str:
    """The command that reproduces (or, with --resume, continues) this comparison."""
    words = ["pyrovae", "compare", args.config]
    for flag, values in (("--vary", args.vary), ("--set", args.set)):
        for value in values:
            words += [flag, value]
    words += ["--seeds", str(args.seeds), "--nll-samples", str(args.nll_samples),
              "--eval-points", str(args.eval_points), "--grad-draws", str(args.grad_draws),
              "--grad-batch", str(args.grad_batch), "--out", str(out)]
    if args.disentanglement:
        words += ["--disentanglement", str(args.disentanglement), "--dci-model", args.dci_model]
    words += [f for f, on in (("--skip-invalid", args.skip_invalid),
                              ("--keep-going", args.keep_going)) if on]
    return " ".join(shlex.quote(w) for w in words)


def _compare(args) -> int:
    from pyrovae.config import load_config
    from pyrovae.experiments import Settings, compare, plan

    config = load_config(args.config, args.set)
    settings = Settings(nll_samples=args.nll_samples, eval_points=args.eval_points,
                        grad_draws=args.grad_draws, grad_batch=args.grad_batch,
                        disentanglement=args.disentanglement, dci_model=args.dci_model)
    if args.dry_run:
        runs, invalid = plan(config, args.vary, args.seeds, skip_invalid=True)
        for spec in runs:
            print(f"run   {spec.name}: {spec.combination.label} seed {spec.seed}")
        for combo in invalid:
            print(f"skip  {combo.label}: {combo.error}")
        return 0
    out = Path(args.out) if args.out else Path("runs") / f"compare-{Path(args.config).stem}"
    command = _command_line(args, out)
    result = compare(config, args.vary, out, args.seeds, settings, resume=args.resume,
                     force=args.force, skip_invalid=args.skip_invalid,
                     keep_going=args.keep_going, command=command)
    print((out / "compare.md").read_text())
    print(f"comparison written to {out}/ (compare.csv, compare.md, compare.png, one folder per "
          f"run)")
    return 1 if result.failed else 0


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="train and evaluate a grid of config variations")
    p.add_argument("config", help="TOML config every combination starts from")
    p.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2",
                   help="values of a config key to compare (keys as for --set); a value may "
                        "carry its own settings: elbo=trace,iwae+num_particles=5")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key for every run, e.g. --set epochs=5")
    p.add_argument("--seeds", type=number("--seeds", SEEDS), default=1,
                   help="runs per combination, seeds train.seed, train.seed+1, ... (default 1)")
    p.add_argument("--out", help="output folder (default: runs/compare-<config name>)")
    p.add_argument("--resume", action="store_true",
                   help="keep finished rows of OUT/compare.csv and continue stopped runs")
    p.add_argument("--force", action="store_true", help="start over, overwriting OUT's runs")
    p.add_argument("--skip-invalid", action="store_true",
                   help="skip (and list in compare.md) combinations the config refuses, "
                        "instead of stopping before training anything")
    p.add_argument("--keep-going", action="store_true",
                   help="after a failing run, go on with the others (exit status 1)")
    p.add_argument("--nll-samples", type=number("--nll-samples", INTEGER), default=1000,
                   help="importance samples K per test point for the NLL (default 1000)")
    p.add_argument("--eval-points", type=number("--eval-points", INTEGER), default=0,
                   help="evaluate on the first N test points (default 0 = all)")
    p.add_argument("--grad-draws", type=number("--grad-draws", INTEGER), default=100,
                   help="gradient estimates for the variance (default 100)")
    p.add_argument("--grad-batch", type=number("--grad-batch", INTEGER), default=0,
                   help="size of the fixed minibatch (default 0 = train.batch_size)")
    p.add_argument("--disentanglement", type=number("--disentanglement", INTEGER), default=0,
                   metavar="N", help="add MIG, FactorVAE, DCI, SAP and BetaVAE scores on N "
                                     "examples (data with known factors, e.g. dsprites; "
                                     "default 0 = none)")
    p.add_argument("--dci-model", choices=DCI_MODELS, default="gbt",
                   help="DCI's classifiers with --disentanglement: gradient-boosted trees as "
                        "disentanglement_lib (default), or a random forest, ~25x faster")
    p.add_argument("--dry-run", action="store_true",
                   help="list the runs and the invalid combinations, train nothing")
    add_common(p)
    p.set_defaults(func=checked(_compare))
