"""Helpers shared by the benchmarks: pyrovae's training step, the interleaved timing loop and
the description of the environment written into every result file."""

from __future__ import annotations

import datetime
import itertools
import json
import os
import platform
import time
from pathlib import Path

import pyro
import torch

import pyrovae
from pyrovae.config import DataConfig, RunConfig, TrainConfig, VAEConfig
from pyrovae.training.trainer import Trainer


def make_pyrovae(data, batch_size: int, model: dict | None = None, train: dict | None = None):
    """pyrovae's own SVI step: Trainer(...).prepare(), then Trainer.train_step, advancing
    ``trainer.step`` as Trainer.run does (train_step keys per-step behaviour, such as Pyro's
    validation on the first step only, on it)."""
    config = RunConfig(model=VAEConfig(**(model or {})), data=DataConfig(name="mnist"),
                       train=TrainConfig(batch_size=batch_size, progress=False, **(train or {})))
    trainer = Trainer(config, data, None)
    trainer.prepare()

    def step(xb):
        loss = trainer.train_step(xb)
        trainer.step += 1
        return loss
    return step


# ---- timing ----------------------------------------------------------------------------------

def batches_of(x: torch.Tensor, batch_size: int):
    """An endless cycle over consecutive [batch_size, D] slices of x."""
    return itertools.cycle([x[i:i + batch_size] for i in range(0, len(x) - batch_size + 1,
                                                                   batch_size)])


def measure(step, batches, warmup: int, steps: int, batch_size: int) -> float:
    """samples/s of ``steps`` calls of step(), after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step(next(batches))
    start = time.perf_counter()
    for _ in range(steps):
        loss = step(next(batches))
    float(loss)  # wait for any queued work
    return steps * batch_size / (time.perf_counter() - start)


def step_times(step, batches, steps: int) -> list[float]:
    """ms of each of ``steps`` timed calls step(batches[i]) (float(loss) waits for any queued
    work): per-step times, for medians that resist a shared machine's noise."""
    times = []
    for i in range(steps):
        start = time.perf_counter()
        float(step(batches[i]))
        times.append(1e3 * (time.perf_counter() - start))
    return times


def steps_for(batch_size: int, quick: bool) -> int:
    """Timed steps per measurement: ~7.7k samples (60 at batch 128), at least 15 steps."""
    return max(3, round(1536 / batch_size)) if quick else max(15, round(7680 / batch_size))


def interleaved(runs: dict, x: torch.Tensor, reps: int, warmup: int, label=str) -> dict:
    """name -> [samples/s per rep] for runs name -> (step, batch_size, timed_steps). Every rep
    measures every run once, in an order rotated by one from the previous rep's."""
    names = list(runs)
    batches = {name: batches_of(x, runs[name][1]) for name in names}
    raw = {name: [] for name in names}
    for rep in range(reps):
        k = rep % len(names)
        for name in names[k:] + names[:k]:
            step, batch_size, n_steps = runs[name]
            raw[name].append(measure(step, batches[name], warmup, n_steps, batch_size))
        print(f"  rep {rep + 1}/{reps}: " + ", ".join(f"{label(n)} {raw[n][-1]:,.0f}"
                                                   for n in names), flush=True)
    return raw


def environment() -> dict:
    """When, where and with what the numbers were taken (load: how busy the machine was)."""
    return {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch_threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "pyro": pyro.__version__,
                     "pyrovae": pyrovae.__version__, "python": platform.python_version()},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine(),
                    "load_average_at_end": [round(v, 2) for v in os.getloadavg()]},
    }


def write_json(path: str, payload: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")
