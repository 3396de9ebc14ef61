"""Datasets held as one uint8 array and batched by indexing it: no per-item Python work.

:class:`IndexedImages` implements ``__getitems__``, which ``torch.utils.data.DataLoader`` calls
with a whole batch of indices, so a batch costs one fancy-index of the array (a tensor in memory
or a ``numpy.memmap`` on disk). Samplers still work as usual, including the ``DistributedSampler``
that Lightning injects under DDP.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

UNLABELLED = -1


def as_uint8_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A uint8 tensor viewing ``images`` without copying when it is already a uint8 array."""
    tensor = torch.from_numpy(np.asarray(images)) if isinstance(images, np.ndarray) else images
    if tensor.dtype != torch.uint8:
        raise TypeError(f"images must be uint8, got {tensor.dtype}")
    return tensor


class IndexedImages(Dataset):
    """``(images[idx], labels[idx])`` for a batch of indices; images are ``(N, C, H, W)`` uint8."""

    def __init__(self, images: np.ndarray | torch.Tensor, labels: torch.Tensor | None = None):
        self.images = images
        n = len(images)
        # no labels: one -1 broadcast to every row (no memory, nothing to pickle to workers)
        self.labels = labels if labels is not None else torch.tensor([UNLABELLED]).expand(n)
        if len(self.labels) != n:
            raise ValueError(f"{n} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def device(self) -> torch.device:
        """Where the images live (the CPU for a memory map); ``take`` wants its index there."""
        return self.images.device if isinstance(self.images, torch.Tensor) else torch.device("cpu")

    def take(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images[index], labels[index])`` for an int64 ``index`` on :attr:`device` (where the
        labels live too)."""
        # index_select, not images[index]: the same rows for a 1-D index, without advanced
        # indexing's general path (benchmarks/README.md)
        labels = self.labels.index_select(0, index)
        if isinstance(self.images, torch.Tensor):
            return self.images.index_select(0, index), labels
        return torch.from_numpy(self.images[index.numpy()]), labels

    def to(self, device: torch.device | str) -> IndexedImages:
        """The same images and labels as tensors on ``device`` (a memory map is read whole): for
        ``data.on_device=true``, where batches are then indexed on the device itself."""
        images = self.images if isinstance(self.images, torch.Tensor) else np.asarray(self.images)
        return IndexedImages(
            torch.as_tensor(images).to(device), self.labels.contiguous().to(device)
        )

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.take(torch.as_tensor(indices, dtype=torch.long, device=self.device))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.__getitems__([index])
        return images[0], labels[0]


def seeded_split(n: int, fractions: Sequence[float], seed: int) -> list[torch.Tensor]:
    """Split ``range(n)`` into consecutive parts of a seeded permutation, sized by ``fractions``.

    The last part takes the remainder, so every index lands in exactly one part.
    """
    if any(f < 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
        raise ValueError(
            f"split fractions must be >= 0 and sum to at most 1, got {list(fractions)}"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    sizes = [round(f * n) for f in fractions[:-1]]
    sizes.append(n - sum(sizes))
    return list(order.split(sizes))
