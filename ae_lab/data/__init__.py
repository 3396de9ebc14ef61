"""LightningDataModules: every dataset as uint8 arrays, batched by indexing."""

from ae_lab.data.base import ImageArrayDataModule
from ae_lab.data.mnist import FashionMNISTDataModule, MNISTDataModule

__all__ = ["FashionMNISTDataModule", "ImageArrayDataModule", "MNISTDataModule"]
