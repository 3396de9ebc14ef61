"""The trainer's profiler when none is asked for: Lightning's pass-through one, made cheaper.

Lightning wraps every hook it calls, for the module and for each callback (about a hundred a
training step), in ``with trainer.profiler.profile(name):``. Its default ``PassThroughProfiler``
answers with a fresh generator-based context manager each time, ~1.5 us apiece: with the
callbacks a run has, several percent of a small model's step on a CPU. This one hands back one
shared no-op context. A profiler you choose (``trainer.profiler=simple|advanced|pytorch``) is
used as given.
"""

from __future__ import annotations

import contextlib

from lightning.pytorch.profilers import PassThroughProfiler

_NOTHING = contextlib.nullcontext()  # re-entrant and reusable: it holds no state


class NoProfiler(PassThroughProfiler):
    """Profiles nothing, at the cost of returning a constant."""

    def profile(self, action_name: str) -> contextlib.nullcontext:  # type: ignore[override]
        return _NOTHING
