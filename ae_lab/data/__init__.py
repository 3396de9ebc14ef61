"""LightningDataModules: every dataset as uint8 arrays, batched by indexing."""

from ae_lab.data.base import ImageArrayDataModule
from ae_lab.data.faces import AnimeFacesDataModule, CelebADataModule
from ae_lab.data.mnist import FashionMNISTDataModule, MNISTDataModule

__all__ = [
    "AnimeFacesDataModule",
    "CelebADataModule",
    "FashionMNISTDataModule",
    "ImageArrayDataModule",
    "MNISTDataModule",
]
