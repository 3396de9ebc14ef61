"""The figures: pure drawing functions (arrays in, images out: :mod:`.drawing`) and one small
callback per figure, each declaring which models it applies to."""

from ae_lab.figures.base import FigureCallback
from ae_lab.figures.denoising import DenoisingPanel
from ae_lab.figures.filters import Filters
from ae_lab.figures.interpolation import LatentInterpolation
from ae_lab.figures.kl_per_unit import KLPerUnit
from ae_lab.figures.latent_space import LatentSpace
from ae_lab.figures.projector import Projector
from ae_lab.figures.reconstructions import Reconstructions
from ae_lab.figures.samples import Samples
from ae_lab.figures.subspace import PrincipalDirections
from ae_lab.figures.traversals import Traversals
from ae_lab.figures.weight_product import WeightProduct

__all__ = [
    "DenoisingPanel",
    "FigureCallback",
    "Filters",
    "KLPerUnit",
    "LatentInterpolation",
    "LatentSpace",
    "PrincipalDirections",
    "Projector",
    "Reconstructions",
    "Samples",
    "Traversals",
    "WeightProduct",
]
