"""One small Callback per figure; the drawing itself lives in :mod:`ae_lab.viz`."""

from ae_lab.callbacks.base import FigureCallback
from ae_lab.callbacks.denoising import DenoisingPanel
from ae_lab.callbacks.interpolation import LatentInterpolation
from ae_lab.callbacks.kl_per_unit import KLPerUnit
from ae_lab.callbacks.latent_space import LatentSpace
from ae_lab.callbacks.reconstructions import Reconstructions
from ae_lab.callbacks.samples import PriorSamples
from ae_lab.callbacks.weight_product import WeightProduct

__all__ = [
    "DenoisingPanel",
    "FigureCallback",
    "KLPerUnit",
    "LatentInterpolation",
    "LatentSpace",
    "PriorSamples",
    "Reconstructions",
    "WeightProduct",
]
