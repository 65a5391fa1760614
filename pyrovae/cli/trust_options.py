"""``pyrovae evaluate``'s options for AIS, BDMC and the inference gaps (docs/ais.md)::

    --ais-steps T [--ais-chains C] [--ais-init guide|prior] [--ais-leapfrog L]
        [--ais-schedule sigmoid|linear] [--ais-step-size E] [--ais-adapt point|chain]
    --bdmc N                      forward and reverse AIS on N points simulated from the model
    --gaps [--gap-family guide|diagonal|gaussian] [--gap-steps S] [--gap-samples K]
        [--gap-lr R] [--gap-eval-samples M]

Each value is checked by the rule of the Python option it sets (AISOptions, GapOptions), and a
setting that would do nothing (``--ais-chains`` without ``--ais-steps``, ``--gap-steps``
without ``--gaps``, ``--bdmc`` without ``--ais-steps``) is refused in one line.
"""

from __future__ import annotations

from pyrovae.config.fields import COUNT, POSITIVE
from pyrovae.runtime.errors import ConfigError
from pyrovae.evaluation.ais import ACCEPT, ADAPT, AIS_STEPS, INITS, SCHEDULES, AISOptions
from pyrovae.evaluation.gaps import EVAL_SAMPLES, FAMILIES, GapOptions
from pyrovae.cli.options import choice, number

#: option name -> (its rule or choices, metavar, help); the flag is --ais-NAME / --gap-NAME
AIS = {"chains": (COUNT, "C", "independent chains per point (default 8)"),
       "init": (INITS, None, "initial distribution: the guide q(z|x) or the prior p(z) "
                "(default guide)"),
       "leapfrog": (COUNT, "L", "leapfrog steps per HMC transition (default 5)"),
       "schedule": (SCHEDULES, None, "beta_t schedule (default sigmoid)"),
       "step_size": (POSITIVE, "E", "initial HMC step size (default 0.05)"),
       "target_accept": (ACCEPT, "A", "acceptance rate the step sizes adapt to (default 0.65)"),
       "adapt": (ADAPT, None, "one step size per point or per chain (default point)")}
GAPS = {"family": (FAMILIES, None, "local posterior family (default guide: the encoder's "
                   "output freed per point)"),
        "steps": (COUNT, "S", "Adam steps of the local optimisation (default 500)"),
        "samples": (COUNT, "K", "reparameterized draws per step (default 10)"),
        "lr": (POSITIVE, "R", "Adam learning rate, cosine-decayed (default 0.01)"),
        "eval_samples": (EVAL_SAMPLES, "M", "draws for the final ELBOs (default 1000)")}


def _add(group, prefix: str, table: dict) -> None:
    for name, (rule, metavar, text) in table.items():
        flag = f"--{prefix}-{name.replace('_', '-')}"
        if isinstance(rule, tuple):  # choices
            kind, metavar = choice(flag, rule), "|".join(rule)
        else:
            kind = number(flag, rule)
        group.add_argument(flag, dest=f"{prefix}_{name}", type=kind, default=None,
                           metavar=metavar, help=text)


def add_trust_arguments(parser) -> None:
    """The options of the module docstring, in their own help group."""
    g = parser.add_argument_group("AIS, BDMC and inference gaps (docs/ais.md)")
    g.add_argument("--ais-steps", type=number("--ais-steps", AIS_STEPS), default=None,
                   metavar="T", help="also estimate log p(x) by annealed importance sampling "
                   "with T steps")
    _add(g, "ais", AIS)
    g.add_argument("--bdmc", type=number("--bdmc", COUNT), default=None, metavar="N",
                   help="bound AIS's error: forward and reverse AIS on N points simulated "
                   "from the model (needs --ais-steps)")
    g.add_argument("--gaps", action="store_true",
                   help="approximation and amortization gaps of every evaluated point")
    _add(g, "gap", GAPS)


def _given(args, prefix: str, table: dict) -> dict:
    return {name: getattr(args, f"{prefix}_{name}") for name in table
            if getattr(args, f"{prefix}_{name}") is not None}


def trust_settings(args) -> dict:
    """``evaluate_run``'s ``ais``, ``gaps`` and ``bdmc_points`` from the parsed options."""
    ais, gaps = _given(args, "ais", AIS), _given(args, "gap", GAPS)
    if args.ais_steps is None:
        if ais:
            flag = "--ais-" + next(iter(ais)).replace("_", "-")
            raise ConfigError(f"{flag} has no effect without --ais-steps; add --ais-steps T "
                              f"(e.g. 500) or leave it out")
        if args.bdmc is not None:
            raise ConfigError("--bdmc runs AIS forward and backward with the AIS settings, "
                              "which need --ais-steps; add --ais-steps T (e.g. 500)")
    if gaps and not args.gaps:
        flag = "--gap-" + next(iter(gaps)).replace("_", "-")
        raise ConfigError(f"{flag} has no effect without --gaps; add --gaps or leave it out")
    return {"ais": None if args.ais_steps is None else AISOptions(steps=args.ais_steps, **ais),
            "gaps": GapOptions(**gaps) if args.gaps else None,
            "bdmc_points": args.bdmc}
