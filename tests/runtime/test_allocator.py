"""reuse_freed_memory: within it, a loop of large same-size tensors reuses its pages (no page
fault per chunk) on glibc; it nests, restores glibc's defaults on leaving, and is a no-op
elsewhere. The importance-sampled log-likelihood runs inside it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from pyrovae.runtime import allocator
from pyrovae.runtime.allocator import reuse_freed_memory

glibc = pytest.mark.skipif(allocator._glibc() is None, reason="the C library is not glibc")


_LOOP = """
import json, resource, torch
from pyrovae.runtime.allocator import reuse_freed_memory

def faults(chunks=20, mb=64):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(chunks):
        t = torch.ones(mb * 2 ** 18)  # float32: mb MB, every page written
        del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

outside = faults()
with reuse_freed_memory() as active:
    inside = faults()
print(json.dumps({"active": active, "outside": outside, "inside": inside}))
"""


@glibc
def test_a_loop_of_large_tensors_reuses_its_pages_inside_and_faults_outside():
    """In a fresh process, as ``pyrovae evaluate`` is one: minor page faults of allocating,
    touching and freeing a 64 MB tensor (above glibc's largest mmap threshold, 32 MiB) 20
    times, outside and inside the block: 20 x 16,384 pages outside, one or two tensors' worth
    inside (the heap grows once or twice, then its pages are reused). In a process that has
    run many other things before (the test suite), glibc's heap may be laid out so that the
    pages are not kept, and the loop then faults as outside (the numbers never differ); and
    after the block, a 64 MB tensor may or may not reuse a free chunk left in glibc's bins,
    so the restore is checked by the calls (next test), not by faults."""
    out = subprocess.run([sys.executable, "-c", _LOOP], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    pages = 64 * 2 ** 20 // 4096                       # 16,384 pages in a 64 MB tensor
    assert got["active"]
    assert got["outside"] > 10 * pages                 # a fresh mapping every time
    assert got["inside"] < 4 * pages, got              # the first chunks' pages, then reused


@glibc
def test_nested_uses_act_once_and_restore_at_the_outermost(monkeypatch):
    calls = []
    real = allocator._set
    monkeypatch.setattr(allocator, "_set", lambda libc, m, t: calls.append((m, t)) or real(libc, m, t))
    with reuse_freed_memory():
        with reuse_freed_memory() as inner:
            assert inner
        assert calls == [(0, allocator.KEEP)]
    assert calls == [(0, allocator.KEEP),
                     (allocator.DEFAULT_MMAP_MAX, allocator.DEFAULT_TRIM_THRESHOLD)]


def test_without_glibc_it_does_nothing(monkeypatch):
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    with reuse_freed_memory() as active:
        assert active is False
    assert allocator._depth == 0


def test_importance_sampling_runs_inside_it(monkeypatch):
    """reduce_log_weights, the loop of every IS estimate, holds reuse_freed_memory."""
    from pyrovae import VAE, VAEConfig
    from pyrovae.evaluation import likelihood

    seen = []

    def spy(*args, **kwargs):
        seen.append(allocator._depth)
        return real(*args, **kwargs)

    real = likelihood.log_weights
    monkeypatch.setattr(likelihood, "log_weights", spy)
    torch.manual_seed(0)
    vae = VAE(VAEConfig(latent_dim=2, hidden=(8,)), (1, 4, 4))
    likelihood.log_likelihood(vae, torch.rand(6, 16).round(), num_samples=10, batch_size=3)
    assert seen and all(depth >= 1 for depth in seen)
    assert allocator._depth == 0
