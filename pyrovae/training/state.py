"""The random state of a run, as plain data a checkpoint can hold (tensors, ints, lists).

Resuming restores it exactly, so a run stopped at any step and resumed takes the same steps,
bit for bit on the CPU, as one that never stopped: the data order and dynamic binarization
are functions of (seed, epoch), and the z draws come from these generators. In a data-parallel
run every rank's generators hold the same state (pyrovae.runtime.distributed.draws), so rank 0's
state resumes a run on any number of processes; on CUDA the stream of the GPU that drew
(``cuda_current``) goes to the GPU of the resuming process.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def capture_rng() -> dict:
    """torch (CPU and CUDA), NumPy and Python generator states."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    version, py_state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        # the GPU whose generator the run draws from (cuda:LOCAL_RANK in a data-parallel run)
        "cuda_current": torch.cuda.current_device() if torch.cuda.is_available() else -1,
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "python": {"version": version, "state": list(py_state), "gauss": gauss},
    }


def restore_rng(state: dict) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        saved = [s.cpu() for s in state["cuda"]]
        if len(saved) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(saved)
        drew = state.get("cuda_current", -1)  # this process draws on its current GPU: it
        if 0 <= drew < len(saved):              # continues the stream the run drew from
            torch.cuda.set_rng_state(saved[drew], torch.cuda.current_device())
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
