"""The callbacks every run installs to keep it honest: the divergence guard, the random state in
each checkpoint, the graceful stop on a signal, the resumable checkpoint, and the run's config
kept in its checkpoints (for ``eval.py``). The figures are :mod:`ae_lab.figures`."""

from ae_lab.run.callbacks.checkpoint import ResumableCheckpoint
from ae_lab.run.callbacks.divergence import DivergenceGuard
from ae_lab.run.callbacks.graceful_stop import GracefulStop
from ae_lab.run.callbacks.rng_state import RandomState
from ae_lab.run.callbacks.run_config import RunConfig

__all__ = ["DivergenceGuard", "GracefulStop", "RandomState", "ResumableCheckpoint", "RunConfig"]
