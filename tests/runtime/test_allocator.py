"""reuse_freed_memory: within it, a loop of large same-size tensors reuses its pages (no page
fault per chunk) on glibc; it nests, restores glibc's defaults on leaving, and is a no-op
elsewhere. The importance-sampled log-likelihood runs inside it."""

from __future__ import annotations

import resource

import pytest
import torch

from pyrovae.runtime import allocator
from pyrovae.runtime.allocator import reuse_freed_memory

glibc = pytest.mark.skipif(allocator._glibc() is None, reason="the C library is not glibc")


def _faults_of_a_loop(chunks: int = 20, mb: int = 64) -> int:
    """Minor page faults of allocating, touching and freeing a tensor of ``mb`` MB ``chunks``
    times (above glibc's largest mmap threshold, 32 MiB)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(chunks):
        t = torch.ones(mb * 2 ** 18)  # float32: mb MB, every page written
        del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@glibc
def test_a_loop_of_large_tensors_reuses_its_pages_inside_and_faults_outside():
    pages = 64 * 2 ** 20 // 4096                       # 16,384 pages in a 64 MB tensor
    outside = _faults_of_a_loop()
    with reuse_freed_memory() as active:
        assert active
        inside = _faults_of_a_loop()
    assert outside > 10 * pages                        # a fresh mapping every time
    assert inside < 2 * pages                          # the first chunk's pages, then reused
    assert _faults_of_a_loop() > 10 * pages            # the defaults are back


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
