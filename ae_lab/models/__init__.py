"""The one LightningModule, :class:`Autoencoder`, assembled from parts: a net, a bottleneck, an
optional corruption and an optional code penalty."""

from ae_lab.models.autoencoder import Autoencoder, Supports
from ae_lab.models.bottleneck import Deterministic, Gaussian
from ae_lab.models.corruption import GaussianNoise, MaskingNoise, SaltAndPepper
from ae_lab.models.penalty import ContractivePenalty, KLSparsityPenalty, L1Penalty, Penalty
from ae_lab.models.quantize import VectorQuantizer

__all__ = [
    "Autoencoder",
    "ContractivePenalty",
    "Deterministic",
    "Gaussian",
    "GaussianNoise",
    "KLSparsityPenalty",
    "L1Penalty",
    "MaskingNoise",
    "Penalty",
    "SaltAndPepper",
    "Supports",
    "VectorQuantizer",
]
