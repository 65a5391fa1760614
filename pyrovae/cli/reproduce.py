"""``pyrovae reproduce NAME``: train, evaluate and tabulate a published number's recipe.

    pyrovae reproduce burda-vae-1 [--out runs/reproduce] [--epochs N] [--set KEY=VALUE]
                                  [--nll-samples K] [--points N]
    pyrovae reproduce dreg-vs-iwae-5 [--seeds N] ...   a ranking of estimators over seeds
    pyrovae reproduce --list

A ``--set`` of a data key (data.name, data.train_size, ...) makes a row on other data than
the recipe's: it is trained and evaluated, and marked "other data: not comparable", never a
goal met or not met (docs/reproduce.md). A ranking (metric "ranking") trains each contender
with seeds 0..N-1 and prints, per claimed pair, the paired difference of test NLL with its
95 % interval and the verdict.
"""

from __future__ import annotations

from pyrovae.config.fields import COUNT
from pyrovae.evaluation.evaluate import MAX_POINTS, NLL_SAMPLES
from pyrovae.cli.common import add_common
from pyrovae.cli.options import checked, number
from pyrovae.runtime.fields import Rule

#: seeds of a ranking: a standard error needs two
SEEDS = Rule(int, 2, max=1000, note="a ranking's standard error over seeds needs >= 2 seeds")


def _list() -> str:
    from pyrovae.reproduce import REPRODUCTIONS

    lines = []
    for name in REPRODUCTIONS:
        r = REPRODUCTIONS.get(name)
        if r.metric == "ranking":
            lines.append(f"{name:<19} {r.paper}, ranking: {r.claim} ({r.seeds} seeds, "
                         f"{r.epochs} epochs)")
            continue
        paper = "—" if r.paper_value is None else f"{r.paper_value:g}"
        goal = "" if r.goal is None else f", goal {r.goal:g}"
        lines.append(f"{name:<16}{r.paper}, {r.table}: {r.metric} {paper}{goal}")
    return "\n".join(lines)


def _reproduce(args) -> int:
    from pyrovae.runtime.errors import ConfigError
    from pyrovae.reports.numbers import format_estimate
    from pyrovae.reproduce import reproduce
    from pyrovae.reproduce.runner import recipe
    from pyrovae.reproduce.table import NOT_COMPARABLE

    if args.list:
        print(_list())
        return 0
    if not args.name:
        raise ConfigError("pyrovae reproduce needs a NAME; see them with pyrovae reproduce "
                          "--list")
    if recipe(args.name).metric == "ranking":  # (an unknown name: one line naming the choices)
        return _rank(args)
    if args.seeds is not None:
        raise ConfigError(f"--seeds applies to a ranking; {args.name!r} is a single-number "
                          f"recipe (pyrovae reproduce --list)")
    row = reproduce(args.name, out=args.out, epochs=args.epochs, overrides=args.set,
                    nll_samples=args.nll_samples, points=args.points,
                    progress=not args.quiet)
    paper = "—" if row["paper_value"] is None else f"{row['paper_value']:g}"
    ours = format_estimate(row["ours"], row["ours_se"])
    if row.get("comparable") is False:  # a --set data key: never judged against the paper
        verdict = f"; {NOT_COMPARABLE} ({row['other_data']})"
    else:
        verdict = ("" if row["met"] is None else
                   f", goal {row['goal']:g} {'met' if row['met'] else 'not met'}")
    print(f"{row['name']}: {row['metric']} ours {ours}, {row['paper']} {paper}{verdict}")
    print(f"written: {args.out}/{row['name']}/row.json, {args.out}/table.md")
    return 0


def _rank(args) -> int:
    from pyrovae.reproduce import reproduce_ranking
    from pyrovae.reproduce.table import NOT_COMPARABLE

    rows = reproduce_ranking(args.name, out=args.out, epochs=args.epochs, overrides=args.set,
                             nll_samples=args.nll_samples, points=args.points,
                             seeds=args.seeds, progress=not args.quiet)
    for r in rows:
        ratio = "—" if r["time_ratio"] is None else f"{r['time_ratio']:.2f}"
        other = "" if r["comparable"] else f" ({NOT_COMPARABLE}: {r['other_data']})"
        print(f"{r['better']} - {r['other']}: {r['diff_mean']:+.3f} nats, 95 % interval "
              f"[{r['diff_lo']:+.3f}, {r['diff_hi']:+.3f}] over seeds {r['seeds']}: "
              f"{r['verdict']}{other}; training time ratio {ratio}")
    print(f"written: {args.out}/{args.name}/ranking.json, {args.out}/rankings.md")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("reproduce", help="train and evaluate a published number's recipe")
    p.add_argument("name", nargs="?", help="the recipe (pyrovae reproduce --list)")
    p.add_argument("--list", action="store_true", help="list the recipes and their papers")
    p.add_argument("--out", default="runs/reproduce",
                   help="folder of the runs and the table (default runs/reproduce)")
    p.add_argument("--epochs", type=number("--epochs", COUNT), default=None,
                   help="train this many epochs instead of the recipe's")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the recipe's config, e.g. --set batch_size=64")
    p.add_argument("--nll-samples", type=number("--nll-samples", NLL_SAMPLES), default=None,
                   metavar="K", help="importance samples per test point (default: the "
                   "recipe's, 5000)")
    p.add_argument("--points", type=number("--points", MAX_POINTS), default=None, metavar="N",
                   help="evaluate on the first N test images (default: all)")
    p.add_argument("--seeds", type=number("--seeds", SEEDS), default=None, metavar="N",
                   help="a ranking: train each contender with seeds 0..N-1 (default: the "
                   "ranking's, 3)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_common(p)
    p.set_defaults(func=checked(_reproduce))
