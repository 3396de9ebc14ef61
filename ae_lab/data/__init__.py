"""LightningDataModules: every dataset as uint8 arrays, batched by indexing.

The DataModules are imported on first use (PEP 562), so that a tool that needs only the image
cache (``python -m ae_lab.data.image_cache.prune``) starts without loading Lightning and torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ae_lab.data.base import ImageArrayDataModule
    from ae_lab.data.faces import AnimeFacesDataModule, CelebADataModule
    from ae_lab.data.image_folder import ImageFolderDataModule
    from ae_lab.data.mnist import FashionMNISTDataModule, MNISTDataModule

_MODULES = {
    "AnimeFacesDataModule": "ae_lab.data.faces",
    "CelebADataModule": "ae_lab.data.faces",
    "FashionMNISTDataModule": "ae_lab.data.mnist",
    "ImageArrayDataModule": "ae_lab.data.base",
    "ImageFolderDataModule": "ae_lab.data.image_folder",
    "MNISTDataModule": "ae_lab.data.mnist",
}

__all__ = [
    "AnimeFacesDataModule",
    "CelebADataModule",
    "FashionMNISTDataModule",
    "ImageArrayDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
