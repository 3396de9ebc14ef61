"""Flushing float32 denormals to zero on the CPU, on every thread that computes.

A model with a sigmoid output learns to drive the logits of pixels that are always black (MNIST's
border) far negative; ``sigmoid`` then returns denormal numbers (below 1.2e-38), their gradients
are denormal, and every matmul that touches them takes the CPU's slow microcode path: later
epochs run at about half the speed of the first (measured in benchmarks/README.md). Values that small carry nothing a float32 model can use (GPUs flush them in most kernels).

The catch is that the x86 flag (FTZ/DAZ in MXCSR) belongs to each thread: ``torch.set_flush_denormal``
sets it on the calling thread, and torch's intra-op (OpenMP) threads copy it only when they are
created, at the first parallel operation of the process. :func:`flush_denormals` therefore checks,
with one parallel operation, that every thread flushes, and says so when some cannot.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def denormals(n: int) -> torch.Tensor:
    """``n`` float32 denormals (the smallest, 1.4e-45), made from their bits: a number written
    as a float would itself be flushed to zero on a thread that flushes."""
    return torch.ones(n, dtype=torch.int32).view(torch.float32)


def flushed() -> torch.Tensor:
    """For each element of a product of denormals by 1 split across the intra-op threads, whether
    it came out as zero (all True: every thread flushes; all False: none does)."""
    # enough elements that ATen splits the product across all its threads (grain size 32768)
    return denormals(max(1, torch.get_num_threads()) * 65536).mul(1.0) == 0


def flush_denormals(enabled: bool) -> bool:
    """Flush (``enabled``) or keep denormals on this thread, and return whether every intra-op
    thread does what was asked. False with a warning when some threads already existed with the
    other setting (run it before the process's first parallel operation), or when this CPU has no
    such flag (``torch.set_flush_denormal`` is supported on x86 with SSE3 and on ARM)."""
    if not torch.set_flush_denormal(enabled):
        if enabled:
            log.info("this CPU cannot flush denormals to zero: training may slow down later")
        return False
    result = flushed()
    if bool(result.all()) if enabled else not bool(result.any()):
        return True
    log.warning(
        "flush_denormal=%s applies to the main thread only: torch's other threads started "
        "before it was set%s",
        enabled,
        " (training may slow down as the model's outputs saturate)" if enabled else "",
    )
    return False
