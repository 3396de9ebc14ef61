"""LightningModules: one shared base, variants that differ only in their objective."""

from ae_lab.models.autoencoder import (
    Autoencoder,
    ContractiveAutoencoder,
    DenoisingAutoencoder,
    LinearAutoencoder,
    SparseAutoencoder,
)
from ae_lab.models.base import AutoencoderBase
from ae_lab.models.vae import VAE

__all__ = [
    "VAE",
    "Autoencoder",
    "AutoencoderBase",
    "ContractiveAutoencoder",
    "DenoisingAutoencoder",
    "LinearAutoencoder",
    "SparseAutoencoder",
]
