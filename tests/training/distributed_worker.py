"""One process of the data-parallel job of tests/training/test_distributed.py, and the settings that the
test's one-process runs share with it.

    RANK=r WORLD_SIZE=2 LOCAL_RANK=r MASTER_ADDR=127.0.0.1 MASTER_PORT=p \\
        python tests/training/distributed_worker.py OUT

(the variables torchrun sets). Each step writes what the test compares into OUT; rank 0 writes
the shared results, each rank its own rank<r>-*.json.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script (torchrun): tests.support from the root
    sys.path.insert(0, str(ROOT))

from pyrovae import VAEConfig, load_dataset  # noqa: E402
from pyrovae.config import load_config  # noqa: E402
from tests.support.tiny_models import TinyVAE  # noqa: E402  (a user's module, kind "module")

OBJECTIVES = ("meanfield", "trace", "iwae")
TRAIN = dict(epochs=2, batch_size=32, lr=3e-3, seed=1, progress=False)
STOP_AT, KILL_AT = 5, 3  # the step (1-based) at which rank 1 is signalled / killed
NLL = dict(num_samples=20, batch_size=7, seed=3)
POINTS = 40

MODULE = dict(latent=3)  # TinyVAE's arguments here
SMALL = ["epochs=1", "progress=false", "train.seed=1", "data.train_size=512", "data.test_size=64"]
# every model kind through the generic loop: config file, overrides, one process's draws exact?
KINDS = {
    "ssvae-trace": ("ssvae-digits.toml", ["elbo=\"trace\""], True),
    "ssvae-enum": ("ssvae-digits.toml", [], False),   # z | enumerated y: the fallback draws
    "hvae": ("digits-hvae.toml", [], True),
    "hvae-iwae": ("digits-hvae.toml", ["elbo=\"iwae\"", "num_particles=3"], False),  # z2 | z1
    "cvae": ("cvae-digits.toml", [], True),
}


def kind_config(name: str):
    path, overrides, _ = KINDS[name]
    return load_config(ROOT / "configs" / path, SMALL + overrides)


def data():
    return load_dataset("digits", binarize="dynamic", train_size=256, test_size=64)


def config(objective: str) -> VAEConfig:
    """A small VAE with ``objective``: Pyro's meanfield or trace estimator (one particle), or
    the importance-weighted bound with 5 particles (a particle plate left of the data plate)."""
    return VAEConfig(latent_dim=4, hidden=(32,), elbo=objective,
                     num_particles=5 if objective == "iwae" else 1)


def params(vae) -> dict:
    return {k: v.detach().clone() for k, v in vae.state_dict().items()}


def elbo_points(vae):
    """A per-point evaluation seeded by batch, for ``distributed.per_point``."""
    from pyrovae.runtime.distributed import batch_seed
    from pyrovae.evaluation.elbo import elbo_terms
    from pyrovae.runtime.rng import seeded

    def fn(xb, index):
        with seeded(batch_seed(5, index)):
            return elbo_terms(vae, xb).elbo
    return fn


def _on_call(n: int, action):
    """Patch Trainer.train_step so that rank 1 runs ``action`` before its n-th step."""
    from pyrovae.training.trainer import Trainer

    real, calls = Trainer.train_step, [0]

    def step(self, xb):
        calls[0] += 1
        if calls[0] == n and os.environ["RANK"] == "1":
            action()
        return real(self, xb)
    Trainer.train_step = step
    return lambda: setattr(Trainer, "train_step", real)


def main(out: Path) -> None:
    from pyrovae.runtime import distributed
    from pyrovae.runtime.errors import CheckpointError, DistributedError
    from pyrovae.evaluation import log_likelihood
    from pyrovae.training import train
    from pyrovae.training.guards import TrainingInterrupted

    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    mine = {}
    ds = data()

    # a refusal on rank 0 (an existing run folder) stops every rank with the same message
    try:
        train(config("meanfield"), ds, out=out / "exists", **TRAIN)
    except CheckpointError as err:
        mine["refused"] = str(err)

    # 2 ranks at global batch 32 for 16 steps, each objective
    shared, runs = {}, {}
    for name in OBJECTIVES:
        runs[name] = train(config(name), ds, **TRAIN)
        shared[name] = params(runs[name].vae)
    mine["world_size"] = runs["meanfield"].metrics.get("world_size")
    for name in KINDS:  # every kind (the ssvae's labelled batch is shared out too)
        cfg = kind_config(name)
        shared[name] = params(train(cfg, load_dataset(cfg.data)).vae)
    torch.manual_seed(rank)  # rank 1's module starts elsewhere: train() takes rank 0's
    shared["module"] = params(train(TinyVAE(**MODULE), ds, **TRAIN).vae)

    # resume a one-process checkpoint (epoch 1 of 2, written by the test) on two processes
    train(config("meanfield"), ds, out=out / "resumed", resume=True, **TRAIN)

    # evaluations shared out by batches
    x = ds.test_data()[:POINTS]
    shared["nll"] = log_likelihood(runs["meanfield"].vae, x, **NLL)
    shared["elbo_points"] = distributed.per_point(elbo_points(runs["meanfield"].vae), x, 6)
    if rank == 0:  # rank 0 alone, all points, while rank 1 goes on
        with distributed.local():
            shared["nll_alone"] = log_likelihood(runs["meanfield"].vae, x, **NLL)

    # SIGTERM on rank 1 alone: both ranks stop at the same step, rank 0 checkpoints
    undo = _on_call(STOP_AT, lambda: os.kill(os.getpid(), signal.SIGTERM))
    try:
        train(config("meanfield"), ds, out=out / "stopped", **TRAIN)
    except TrainingInterrupted as err:
        mine["interrupted"] = {"message": str(err), "signum": err.signum}
    undo()
    if rank == 0:
        torch.save(shared, out / "shared.pt")
    (out / f"rank{rank}.json").write_text(json.dumps(mine))

    # rank 1 dies (SIGKILL) at its 3rd step: rank 0 must stop with a message, not hang
    _on_call(KILL_AT, lambda: os.kill(os.getpid(), signal.SIGKILL))
    start = time.perf_counter()
    try:
        train(config("meanfield"), ds, **TRAIN)
        lost = {"error": None}
    except DistributedError as err:
        lost = {"error": str(err), "every_rank": getattr(err, "every_rank", False)}
    lost["seconds"] = time.perf_counter() - start
    (out / f"rank{rank}-killed.json").write_text(json.dumps(lost))


if __name__ == "__main__":  # run as the module distributed_worker (the one the test imports)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import distributed_worker

    distributed_worker.main(Path(sys.argv[1]))
