"""MNIST and Fashion-MNIST: the whole set in memory as one uint8 tensor.

Files are looked for, plain or ``.gz``, in torchvision's raw layout ``<root>/<Name>/raw/`` and
directly in ``<root>``; Fashion-MNIST also in Debian's ``/usr/share/datasets/fashion-mnist``
(package ``dataset-fashion-mnist``). Only when none holds them does ``prepare_data`` download them
with torchvision.

``pad_to`` zero-pads every image to a centred ``pad_to x pad_to`` square (ae_bakeoff's protocol
pads 28x28 to 32x32, a size that halves cleanly through conv layers).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
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
    """Handwritten digits, 28x28 grey; official 60k train / 10k test, val held out of train.

    Args (beside :class:`~ae_lab.data.base.ImageArrayDataModule`'s):
    download: fetch the files with torchvision when they are missing.
    pad_to: zero-pad each image to a centred ``pad_to x pad_to`` square (at least the image's
        size); ``None``: as they are.
    """

    folder_name = "MNIST"  # torchvision's folder under root, and its dataset class
    dataset_class = torchvision.datasets.MNIST
    system_folders: tuple[str, ...] = ()
    class_names = tuple(str(d) for d in range(10))

    def __init__(self, *args, download: bool = True, pad_to: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.download = bool(download)
        self.pad_to = None if pad_to is None else int(pad_to)

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
        if self.pad_to is not None:
            images = pad_images(images, self.pad_to)
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


def pad_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """``(N, C, H, W)`` images zero-padded to ``(N, C, size, size)``, centred (an odd margin puts
    its extra pixel below and to the right); a short error when ``size`` is smaller."""
    height, width = images.shape[-2:]
    if size < max(height, width):
        raise UserError(
            f"data.pad_to={size}: smaller than the images ({height}x{width}); give "
            f"data.pad_to>={max(height, width)}, or null to keep them as they are"
        )
    top, left = (size - height) // 2, (size - width) // 2
    margins = (left, size - width - left, top, size - height - top)
    return F.pad(images, margins, value=0)


class FashionMNISTDataModule(MNISTDataModule):
    """Zalando's clothing images: MNIST's format and sizes, harder content."""

    folder_name = "FashionMNIST"
    dataset_class = torchvision.datasets.FashionMNIST
    system_folders = ("/usr/share/datasets/fashion-mnist",)
    class_names = (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    )  # fmt: skip
