"""Training speed of pyrovae's M2 (semi-supervised VAE) against Pyro's own example,
examples/vae/ss_vae_M2.py, at the same architecture and batch, side by side in one process.

    python -m benchmarks.m2_speed [--batch-sizes 200 100] [--label-batch 100] [--reps 7]
                                  [--steps 5] [--warmup 2] [--threads 1] [--train-size 6000]
                                  [--out benchmarks/results/m2_speed.json]

The architecture (both): q(y|x) MLP 784-500-10 (softmax), q(z|x,y) MLP [x, y] 794-500-2x50,
p(x|y,z) MLP [z, y] 60-500-784 (Bernoulli), softplus hidden units, z of 50 dims, y summed out of
the unlabelled bound by TraceEnum_ELBO(max_plate_nesting=1) with parallel enumeration, plus the
classification loss alpha * -log q(y|x) on labelled data. Data: dynamically binarized MNIST
(``pyrovae.load_dataset("mnist")``, the first ``--train-size`` images), the same minibatches for
both.

The contenders:

    pyro-example      a re-implementation of Pyro's examples/vae/ss_vae_M2.py (the example is not
                      installed): its SSVAE (custom MLPs with broadcasting concatenation, exp
                      scale, softmax / sigmoid outputs, pyro.module("ss_vae")), the guide under
                      config_enumerate(..., "parallel", expand=True), two SVIs sharing one
                      pyro.optim.ClippedAdam(lr 4.2e-4, betas (0.9, 0.999)): loss_basic =
                      SVI(model, guide, TraceEnum_ELBO(max_plate_nesting=1)) and loss_aux =
                      SVI(model_classify, guide_classify, Trace_ELBO()) with the example's
                      aux-loss multiplier 46. Pyro's validation as the user gets it (on);
                      "pyro-example/noval" is the same with validation off.
        unsup step    what the example does for an unlabelled minibatch of B:
                      loss_basic.step(x_u); loss_aux.step(x_u)   (the aux model is empty
                      without labels, but its SVI step still runs, as in the example)
        sup step      what it does for a labelled minibatch of L (--label-batch):
                      loss_basic.step(x_l, y_l); loss_aux.step(x_l, y_l)
    pyrovae           pyrovae.kinds.ssvae.trainer.SSVAETrainer.train_step(x_u) for an
                      SSVAEConfig(hidden=[500], classifier=[500], classifier_network="mlp",
                      activation="softplus", latent_dim=50, elbo="enum", enumerate="parallel",
                      label_batch_size=L), advancing trainer.step as Trainer.run does: ONE
                      update on the unlabelled batch of B AND a labelled batch of L together
                      (U(x_u) + L(x_l, y_l) + alpha * aux), its default fast path.

What a "step" is, and the two ratios reported (per-step medians, ms):

    per unlabelled batch   pyrovae step / pyro unsup step. Both take one unlabelled batch of B;
                           pyrovae's step does the labelled batch too, so this ratio is
                           conservative for pyrovae. Throughput = B / time. Over an epoch, the
                           example spends nearly all its steps on unlabelled batches (its
                           labelled batches come once every ~N/labels batches), so this is the
                           epoch-throughput ratio on unlabelled data.
    same work              (pyro unsup step + pyro sup step) / pyrovae step: both process B
                           unlabelled and L labelled points. Throughput = (B + L) / time.

The ratio "pyrovae / pyro-example" is a ratio of throughputs (> 1: pyrovae faster).

How: every contender is built once per batch size, warmed up by ``--warmup`` untimed steps,
then ``--reps`` repetitions each time every contender once for ``--steps`` steps (each step
timed alone, the clock stopped after float() of its loss), in an order rotated by one from rep
to rep, so load from other users of the machine falls on all alike. ``--threads`` sets torch's
intra-op threads (1 by default: on a shared machine, waiting threads make times swing).
Compare ratios from one run; absolute numbers move with the machine's load.
"""

from __future__ import annotations

import argparse
import statistics

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, config_enumerate
from pyro.optim import ClippedAdam
from torch import nn

import pyrovae
from pyrovae.config import DataConfig, RunConfig, SSVAEConfig, TrainConfig
from pyrovae.kinds.ssvae.trainer import SSVAETrainer

from .common import environment, step_times, write_json

# ---- Pyro's examples/vae/ss_vae_M2.py (and utils/custom_mlp.py), as the example has them -------


class Exp(nn.Module):
    def forward(self, val):
        return torch.exp(val)


class ConcatModule(nn.Module):
    """custom_mlp.ConcatModule: concatenate inputs on the last dim, broadcasting the rest."""

    def __init__(self, allow_broadcast=False):
        super().__init__()
        self.allow_broadcast = allow_broadcast

    def forward(self, *input_args):
        if len(input_args) == 1:
            input_args = input_args[0]
        if torch.is_tensor(input_args):
            return input_args
        if self.allow_broadcast:
            shape = torch.broadcast_shapes(*[s.shape[:-1] for s in input_args]) + (-1,)
            input_args = [s.expand(shape) for s in input_args]
        return torch.cat(input_args, dim=-1)


class ListOutModule(nn.ModuleList):
    def forward(self, *args, **kwargs):
        return [mm.forward(*args, **kwargs) for mm in self]


class MLP(nn.Module):
    """custom_mlp.MLP: [concat] -> (Linear, activation)* -> Linear head(s) with output
    activation(s); a list as the last size splits the output into several heads."""

    def __init__(self, mlp_sizes, activation=nn.Softplus, output_activation=None,
                 allow_broadcast=False):
        super().__init__()
        input_size, hidden, output_size = mlp_sizes[0], mlp_sizes[1:-1], mlp_sizes[-1]
        layers = [ConcatModule(allow_broadcast)]
        last = input_size
        for size in hidden:
            layers += [nn.Linear(last, size), activation()]
            last = size
        if isinstance(output_size, (list, tuple)):
            acts = output_activation or [None] * len(output_size)
            heads = []
            for size, act in zip(output_size, acts):
                head = [nn.Linear(last, size)]
                if act is not None:
                    head.append(act())
                heads.append(nn.Sequential(*head))
            layers.append(ListOutModule(heads))
        else:
            layers.append(nn.Linear(last, output_size))
            if output_activation is not None:
                layers.append(output_activation())
        self.sequential_mlp = nn.Sequential(*layers)

    def forward(self, *args, **kwargs):
        return self.sequential_mlp.forward(*args, **kwargs)


class ExampleSSVAE(nn.Module):
    """ss_vae_M2.SSVAE (current Pyro: plates, nn.Softmax / nn.Sigmoid outputs)."""

    def __init__(self, output_size=10, input_size=784, z_dim=50, hidden_layers=(500,),
                 config_enum="parallel", aux_loss_multiplier=46.0):
        super().__init__()
        self.output_size, self.input_size, self.z_dim = output_size, input_size, z_dim
        self.aux_loss_multiplier = aux_loss_multiplier
        broadcast = config_enum == "parallel"
        hidden = list(hidden_layers)
        self.encoder_y = MLP([input_size] + hidden + [output_size], activation=nn.Softplus,
                             output_activation=lambda: nn.Softmax(dim=-1),
                             allow_broadcast=broadcast)
        self.encoder_z = MLP([input_size + output_size] + hidden + [[z_dim, z_dim]],
                             activation=nn.Softplus, output_activation=[None, Exp],
                             allow_broadcast=broadcast)
        self.decoder = MLP([z_dim + output_size] + hidden + [input_size],
                           activation=nn.Softplus, output_activation=nn.Sigmoid,
                           allow_broadcast=broadcast)

    def model(self, xs, ys=None):
        pyro.module("ss_vae", self)
        batch_size = xs.size(0)
        options = dict(dtype=xs.dtype, device=xs.device)
        with pyro.plate("data"):
            prior_loc = torch.zeros(batch_size, self.z_dim, **options)
            prior_scale = torch.ones(batch_size, self.z_dim, **options)
            zs = pyro.sample("z", dist.Normal(prior_loc, prior_scale).to_event(1))
            alpha_prior = torch.ones(batch_size, self.output_size, **options) / self.output_size
            ys = pyro.sample("y", dist.OneHotCategorical(alpha_prior), obs=ys)
            loc = self.decoder.forward([zs, ys])
            pyro.sample("x", dist.Bernoulli(loc, validate_args=False).to_event(1), obs=xs)
            return loc

    def guide(self, xs, ys=None):
        with pyro.plate("data"):
            if ys is None:
                alpha = self.encoder_y.forward(xs)
                ys = pyro.sample("y", dist.OneHotCategorical(alpha))
            loc, scale = self.encoder_z.forward([xs, ys])
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def model_classify(self, xs, ys=None):
        pyro.module("ss_vae", self)
        with pyro.plate("data"):
            if ys is not None:
                alpha = self.encoder_y.forward(xs)
                with pyro.poutine.scale(scale=self.aux_loss_multiplier):
                    pyro.sample("y_aux", dist.OneHotCategorical(alpha), obs=ys)

    def guide_classify(self, xs, ys=None):
        pass


def make_pyro_example(validate: bool = True):
    """(unsup_step(x_u), sup_step(x_l, y_onehot)): the example's per-minibatch work."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    ss_vae = ExampleSSVAE()
    optimizer = ClippedAdam({"lr": 0.00042, "betas": (0.9, 0.999)})
    guide = config_enumerate(ss_vae.guide, "parallel", expand=True)
    elbo = TraceEnum_ELBO(max_plate_nesting=1, strict_enumeration_warning=False)
    losses = [SVI(ss_vae.model, guide, optimizer, loss=elbo),
              SVI(ss_vae.model_classify, ss_vae.guide_classify, optimizer, loss=Trace_ELBO())]

    def unsup_step(xs):
        with pyro.validation_enabled(validate):
            return sum(loss.step(xs) for loss in losses)

    def sup_step(xs, ys):
        with pyro.validation_enabled(validate):
            return sum(loss.step(xs, ys) for loss in losses)
    return unsup_step, sup_step


# ---- pyrovae ------------------------------------------------------------------------------------

def make_pyrovae(data, batch_size: int, label_batch: int):
    """pyrovae's M2 step at the example's architecture: SSVAETrainer.train_step(x_u), which
    also draws the step's labelled batch of ``label_batch``."""
    model = SSVAEConfig(hidden=(500,), classifier=(500,), classifier_network="mlp",
                        activation="softplus", latent_dim=50, elbo="enum", enumerate="parallel",
                        labels=100, validation=0, label_batch_size=label_batch)
    config = RunConfig(model=model, data=DataConfig(name="mnist", binarize="dynamic"),
                       train=TrainConfig(batch_size=batch_size, progress=False))
    trainer = SSVAETrainer(config, data, None)
    trainer.prepare()
    x_u = trainer.epoch_data(1)

    def step(xb):
        loss = trainer.train_step(xb)
        trainer.step += 1
        return loss
    return step, x_u


# ---- timing -------------------------------------------------------------------------------------

def contenders(data, b: int, label_batch: int, n_batches: int):
    """name -> (step(i), unlabelled points, labelled points) for the batch size b."""
    pv_step, x_u = make_pyrovae(data, b, label_batch)
    xu = [x_u[i * b:(i + 1) * b] for i in range(n_batches)]
    gen = torch.Generator().manual_seed(1)
    idx = [torch.randint(0, len(x_u), (label_batch,), generator=gen) for _ in range(n_batches)]
    xl = [x_u[i] for i in idx]  # for timing, any images and labels serve
    yl = [torch.nn.functional.one_hot(data.train_y[i], 10).to(x_u.dtype) for i in idx]
    runs = {"pyrovae": (lambda i: pv_step(xu[i]), b, label_batch)}
    for name, validate in (("pyro-example", True), ("pyro-example/noval", False)):
        unsup, sup = make_pyro_example(validate)
        runs[f"{name} unsup"] = ((lambda i, f=unsup: f(xu[i])), b, 0)
        runs[f"{name} sup"] = ((lambda i, f=sup: f(xl[i], yl[i])), 0, label_batch)
    return runs


def timed(runs: dict, reps: int, steps: int, warmup: int) -> dict:
    names = list(runs)
    for name in names:
        for i in range(warmup):
            runs[name][0](i)
    raw = {name: [] for name in names}
    for rep in range(reps):
        k = rep % len(names)
        for name in names[k:] + names[:k]:
            raw[name].extend(step_times(lambda i, f=runs[name][0]: torch.as_tensor(f(i)),
                                        list(range(steps)), steps))
        print(f"  rep {rep + 1}/{reps}: " + ", ".join(
            f"{n} {statistics.median(raw[n][-steps:]):.1f} ms" for n in names), flush=True)
    return raw


def summarize(raw: dict, b: int, label_batch: int) -> dict:
    med = {name: statistics.median(v) for name, v in raw.items()}
    rows = {name: {"median_ms": round(med[name], 2), "min_ms": round(min(v), 2),
                   "max_ms": round(max(v), 2), "ms_per_step": [round(t, 2) for t in v]}
            for name, v in raw.items()}
    pv = med["pyrovae"]
    comparisons = {}
    for ref in ("pyro-example", "pyro-example/noval"):
        unsup, both = med[f"{ref} unsup"], med[f"{ref} unsup"] + med[f"{ref} sup"]
        comparisons[ref] = {
            "per_unlabelled_batch": {"pyrovae_samples_per_s": round(1e3 * b / pv, 1),
                                     "pyro_samples_per_s": round(1e3 * b / unsup, 1),
                                     "ratio": round(unsup / pv, 3)},
            "same_work": {"pyrovae_samples_per_s": round(1e3 * (b + label_batch) / pv, 1),
                          "pyro_samples_per_s": round(1e3 * (b + label_batch) / both, 1),
                          "ratio": round(both / pv, 3)},
        }
    return {"batch_size": b, "label_batch": label_batch, "steps": rows,
            "comparisons": comparisons}


def table(results: list[dict], goal: float) -> str:
    lines = ["| B | reference | step | pyrovae samples/s | reference samples/s | "
             f"pyrovae / reference | >= {goal:g}x |", "|---:|---|---|---:|---:|---:|:---:|"]
    for r in results:
        for ref, comp in r["comparisons"].items():
            for kind, c in comp.items():
                lines.append(f"| {r['batch_size']} | {ref} | {kind.replace('_', ' ')} | "
                             f"{c['pyrovae_samples_per_s']:,.0f} | {c['pyro_samples_per_s']:,.0f}"
                             f" | {c['ratio']:.2f} | {'yes' if c['ratio'] >= goal else 'no'} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[200, 100])
    parser.add_argument("--label-batch", type=int, default=100, help="labelled points per step")
    parser.add_argument("--reps", type=int, default=7, help="round-robin repetitions")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps at start")
    parser.add_argument("--train-size", type=int, default=6000, help="MNIST images loaded")
    parser.add_argument("--goal", type=float, default=1.5, help="the speed-up asked for")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--out", default="benchmarks/results/m2_speed.json")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    data = pyrovae.load_dataset("mnist", binarize="dynamic", train_size=args.train_size)
    n_batches = max(args.steps, args.warmup)
    results = []
    for b in args.batch_sizes:
        print(f"batch {b} (+ {args.label_batch} labelled):", flush=True)
        runs = contenders(data, b, args.label_batch, n_batches)
        results.append(summarize(timed(runs, args.reps, args.steps, args.warmup), b,
                                 args.label_batch))
    print(table(results, args.goal))
    if args.out:
        write_json(args.out, {
            "benchmark": "m2_speed", **environment(), "goal": args.goal,
            "reps": args.reps, "steps": args.steps, "warmup": args.warmup,
            "train_size": args.train_size, "results": results,
        })


if __name__ == "__main__":
    main()
