"""MNIST and Fashion-MNIST: the whole set in memory as one uint8 tensor.

Files are looked for, plain or ``.gz``, in torchvision's raw layout ``<root>/<Name>/raw/`` and
directly in ``<root>``; Fashion-MNIST also in Debian's ``/usr/share/datasets/fashion-mnist``
(package ``dataset-fashion-mnist``). Only when none holds them does ``prepare_data`` download them
with torchvision.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchvision

from ae_lab.data.arrays import seeded_split
from ae_lab.data.base import ImageArrayDataModule, Split
from ae_lab.data.idx import read_idx
from ae_lab.errors import UserError

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


class MNISTDataModule(ImageArrayDataModule):
    """Handwritten digits, 28x28 grey; official 60k train / 10k test, val held out of train."""

    folder_name = "MNIST"  # torchvision's folder under root, and its dataset class
    dataset_class = torchvision.datasets.MNIST
    system_folders: tuple[str, ...] = ()
    class_names = tuple(str(d) for d in range(10))

    def __init__(self, *args, download: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.download = bool(download)

    def candidate_folders(self) -> list[Path]:
        root = Path(self.root).expanduser()
        return [
            root / self.folder_name / "raw",
            root,
            root / "raw",
            *map(Path, self.system_folders),
        ]

    def raw_folder(self) -> Path | None:
        """The first candidate folder that holds all four IDX files."""
        names = [name for pair in FILES.values() for name in pair]
        for folder in self.candidate_folders():
            if all(_find(folder, name) for name in names):
                return folder
        return None

    def prepare_data(self) -> None:
        if self.raw_folder() is not None:
            return
        target = Path(self.root).expanduser() / self.folder_name / "raw"
        files = ", ".join(name for pair in FILES.values() for name in pair)
        where = f"{self.folder_name} not found: expected {files} (plain or .gz) in {target}/"
        if not self.download:
            raise UserError(
                f"{where}. Set data.root=DIR to the folder holding them, or data.download=true."
            )
        try:
            self.dataset_class(self.root, train=True, download=True)
            self.dataset_class(self.root, train=False, download=True)
        except Exception as exc:  # any network or disk failure: say what to do instead
            reason = " ".join(str(exc).split())[:160]
            raise UserError(
                f"{where}, and downloading them failed ({reason}). "
                f"Download them on a machine with network access (torchvision.datasets."
                f"{self.dataset_class.__name__}(root, download=True)) and copy them there, "
                "or set data.root=DIR to a folder that holds them."
            ) from None

    def _read(self, folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        image_file, label_file = (_find(folder, name) for name in FILES[split])
        try:
            images, labels = read_idx(image_file), read_idx(label_file)
        except ValueError as exc:
            raise UserError(f"{exc}; delete it and download it again.") from None
        if images.ndim != 3 or len(images) != len(labels):
            raise UserError(
                f"{image_file} and {label_file} do not match: shapes {images.shape}, {labels.shape}"
            )
        images = torch.from_numpy(images).unsqueeze(1)  # (N, 1, 28, 28)
        return images, torch.from_numpy(labels.astype(np.int64))

    def load_splits(self) -> dict[str, Split]:
        folder = self.raw_folder()
        if folder is None:
            self.prepare_data()  # raises the short error, or downloads
            folder = self.raw_folder()
        train_images, train_labels = self._read(folder, "train")
        train_idx, val_idx = seeded_split(
            len(train_images), [1 - self.val_fraction, self.val_fraction], self.seed
        )
        return {
            "train": (train_images[train_idx], train_labels[train_idx]),
            "val": (train_images[val_idx], train_labels[val_idx]),
            "test": self._read(folder, "test"),
        }


class FashionMNISTDataModule(MNISTDataModule):
    """Zalando's clothing images: MNIST's format and sizes, harder content."""

    folder_name = "FashionMNIST"
    dataset_class = torchvision.datasets.FashionMNIST
    system_folders = ("/usr/share/datasets/fashion-mnist",)
    class_names = (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    )  # fmt: skip
