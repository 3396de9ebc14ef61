"""One small Callback per figure (the drawing itself lives in :mod:`ae_lab.viz`), and the ones that
keep a run honest: the divergence guard, the random state, the graceful stop on a signal and the
resumable checkpoint, and the run's config kept in its checkpoints."""

from ae_lab.callbacks.base import FigureCallback
from ae_lab.callbacks.checkpoint import ResumableCheckpoint
from ae_lab.callbacks.denoising import DenoisingPanel
from ae_lab.callbacks.divergence import DivergenceGuard
from ae_lab.callbacks.graceful_stop import GracefulStop
from ae_lab.callbacks.interpolation import LatentInterpolation
from ae_lab.callbacks.kl_per_unit import KLPerUnit
from ae_lab.callbacks.latent_space import LatentSpace
from ae_lab.callbacks.progress import ProgressBar
from ae_lab.callbacks.reconstructions import Reconstructions
from ae_lab.callbacks.rng_state import RandomState
from ae_lab.callbacks.run_config import RunConfig
from ae_lab.callbacks.samples import PriorSamples
from ae_lab.callbacks.weight_product import WeightProduct

__all__ = [
    "DenoisingPanel",
    "DivergenceGuard",
    "FigureCallback",
    "KLPerUnit",
    "GracefulStop",
    "LatentInterpolation",
    "LatentSpace",
    "PriorSamples",
    "ProgressBar",
    "RandomState",
    "Reconstructions",
    "ResumableCheckpoint",
    "RunConfig",
    "WeightProduct",
]
