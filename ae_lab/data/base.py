"""The DataModule base for every dataset: uint8 image arrays per split, batches by indexing.

Subclasses implement ``prepare_data`` (find, download or cache the files) and ``load_splits``
(return the ``train``/``val``/``test`` arrays). Each split is batched by
:class:`~ae_lab.data.batches.Batches` (no DataLoader: a batch is one index of the array, and the
training order depends only on the seed and the epoch, so a resumed run sees the same batches).
Batches travel to the device as uint8 (a quarter of the bytes of float32) and become floats in
``[0, 1]`` there, in ``on_after_batch_transfer``.

The small API the figure callbacks use: ``image_shape``, ``sample_batch`` and ``class_names``;
the latent measures also read ``holdout_class`` (the class left out of training, kept in test).
"""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.accelerators import CUDAAccelerator

from ae_lab.data.arrays import IndexedImages
from ae_lab.data.batches import Batches
from ae_lab.errors import UserError

BINARIZE = {False: None, None: None, True: "threshold", "threshold": "threshold",
            "stochastic": "stochastic"}  # fmt: skip
Split = tuple[Any, torch.Tensor | None]  # (uint8 images (N, C, H, W), int64 labels or None)
SPLITS = ("train", "val", "test")


class ImageArrayDataModule(L.LightningDataModule):
    """Args:
    root: folder the dataset lives in (``data.root``).
    batch_size: images per batch (per device under DDP).
    val_fraction: share of the training images held out for validation (when the dataset has
        no official validation split).
    seed: seeds the split and the training order (a permutation per epoch), so both are the same
        on every run and every DDP rank (``None``, as in a ``seed=null`` run, acts as 0 does: val
        and test stay comparable across runs).
    binarize: pixels to {0, 1} for a Bernoulli likelihood: ``false``; ``threshold`` (or ``true``):
        at 0.5; ``stochastic``: each pixel drawn once from Bernoulli(intensity) with a fixed seed,
        as the literature's binarised MNIST (Larochelle's) was made.
    on_device: keep each split whole on the accelerator (as uint8: MNIST and Fashion-MNIST take
        under 60 MB) and index batches there: no host-to-device copy per step. For datasets that
        fit in the device's memory.
    holdout_class: a class (``0`` to ``len(class_names) - 1``) left out of the training and
        validation splits and kept in test, where it is the anomaly to detect (``null``: none).
        Labelled datasets only.
    """

    class_names: tuple[str, ...] = ()

    def __init__(
        self,
        root: str,
        batch_size: int = 128,
        val_fraction: float = 0.1,
        seed: int | None = 0,
        binarize: bool | Literal["threshold", "stochastic"] = False,
        on_device: bool = False,
        holdout_class: int | None = None,
    ) -> None:
        super().__init__()
        self.root = str(root)
        self.batch_size = int(batch_size)
        self.val_fraction = float(val_fraction)
        self.seed = int(seed) if seed is not None else 0
        self.binarize = BINARIZE.get(binarize, binarize)
        if self.binarize not in BINARIZE.values():
            raise ValueError(
                f"data.binarize must be false, threshold (or true) or stochastic, got {binarize!r}"
            )
        self.on_device = bool(on_device)
        self.holdout_class = None if holdout_class is None else int(holdout_class)
        if self.holdout_class is not None:
            check_class(self.holdout_class, self.class_names, type(self).__name__)
        self.splits: dict[str, IndexedImages] | None = None
        self._on_device: dict[str, IndexedImages] = {}  # the splits moved to the trainer's device

    # ---- to implement ------------------------------------------------------------------------
    def load_splits(self) -> dict[str, Split]:
        """``{"train": (images, labels), "val": ..., "test": ...}`` from files already on disk."""
        raise NotImplementedError

    # ---- Lightning ---------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        loaded = self.load_splits()
        if self.binarize == "stochastic":
            # one fixed draw per split, whatever the run's seed: test numbers compare across runs
            loaded = {
                name: (stochastic_binarize(images, seed=SPLITS.index(name)), labels)
                for name, (images, labels) in loaded.items()
            }
        if self.holdout_class is not None:  # after binarising: the other images' draws stay
            loaded = {
                name: without_class(*split, self.holdout_class) if name != "test" else split
                for name, split in loaded.items()
            }
        self.splits = {name: IndexedImages(*loaded[name]) for name in SPLITS}

    def _batches(self, split: str, train: bool) -> Batches:
        self.setup()
        trainer = self.trainer
        # trainer.overfit_batches wants the same few batches every epoch, as Lightning does by
        # swapping a DataLoader's sampler for a sequential one
        overfit = trainer is not None and trainer.overfit_batches > 0
        return Batches(
            self._split_for_batches(split),
            self.batch_size,
            shuffle=train and not overfit,
            drop_last=train,
            seed=self.seed,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
            epoch=self._current_epoch,
            pin_memory=trainer is not None and isinstance(trainer.accelerator, CUDAAccelerator),
        )

    def batches_per_epoch(self, world_size: int = 1) -> int:
        """Training batches in an epoch of each of ``world_size`` processes."""
        self.setup()
        return len(Batches(self.splits["train"], self.batch_size, drop_last=True,
                           world_size=world_size))  # fmt: skip

    def _split_for_batches(self, split: str) -> IndexedImages:
        """The split batches are indexed from: on the trainer's device with ``on_device``."""
        if not self.on_device or self.trainer is None:
            return self.splits[split]
        device = self.trainer.strategy.root_device
        held = self._on_device.get(split)
        if held is None or held.device != device:
            held = self._on_device[split] = self.splits[split].to(device)
        return held

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        """Our batches are two tensors: moved directly, without Lightning's generic walk over
        any collection; a no-op for a split already on the device."""
        images, labels = batch
        return images.to(device, non_blocking=True), labels.to(device, non_blocking=True)

    def _current_epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def train_dataloader(self) -> Batches:
        return self._batches("train", train=True)

    def val_dataloader(self) -> Batches:
        return self._batches("val", train=False)

    def test_dataloader(self) -> Batches:
        return self._batches("test", train=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        return self.to_float(images), labels

    # ---- API for callbacks and tests -----------------------------------------------------------
    def to_float(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, C, H, W)`` to float32 in ``[0, 1]`` (or ``{0, 1}`` when binarising)."""
        if self.binarize:
            return (images >= 128).float()  # stochastic: already 0 or 255
        return images.float().div_(255)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image, as the model will see it."""
        self.setup()
        return tuple(self.splits["train"].images.shape[1:])

    def split_size(self, split: str) -> int:
        self.setup()
        return len(self.splits[split])

    def sample_batch(
        self, n: int | None = None, split: str = "val", seed: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` images of ``split`` (float, on the CPU) chosen by ``seed``; all of them if ``n`` is None.

        The same arguments always give the same images, so figures compare across epochs.
        """
        self.setup()
        data = self.splits[split]
        count = len(data) if n is None else min(n, len(data))
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
        images, labels = data.__getitems__(order[:count].tolist())
        return self.to_float(images), labels


def check_class(label: int, class_names: tuple[str, ...], dataset: str) -> None:
    """Refuse a ``data.holdout_class`` the dataset does not have: one line saying which it has."""
    if not class_names:
        raise UserError(
            f"data.holdout_class={label}: {dataset}'s images have no class labels, so no class "
            "can be held out; remove data.holdout_class, or use a labelled dataset (data=mnist, "
            "data=fashion_mnist)"
        )
    if not 0 <= label < len(class_names):
        named = ", ".join(f"{i} {name}" if name != str(i) else str(i)
                          for i, name in enumerate(class_names))  # fmt: skip
        raise UserError(
            f"data.holdout_class={label}: {dataset} has no class {label}; give one of {named}"
        )


def without_class(images: Any, labels: torch.Tensor | None, label: int) -> Split:
    """The images and labels of a split without those of class ``label``."""
    if labels is None:
        raise UserError(f"data.holdout_class={label}: this split has no labels to hold out by")
    keep = torch.as_tensor(labels) != label
    index = keep.nonzero().squeeze(1)
    if isinstance(images, torch.Tensor):
        return images.index_select(0, index), labels[index]
    return np.asarray(images)[index.numpy()], labels[index]


def stochastic_binarize(images: Any, seed: int, chunk: int = 8192) -> torch.Tensor:
    """uint8 images with each pixel set to 255 with probability ``intensity / 255``, else 0: one
    fixed draw, seeded (a binarised dataset, not noise that changes every epoch)."""
    images = torch.as_tensor(np.asarray(images))
    generator = torch.Generator().manual_seed(seed)
    out = torch.empty_like(images)
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk]
        draw = torch.rand(part.shape, generator=generator) * 255
        out[start : start + chunk] = (draw < part).to(torch.uint8) * 255
    return out
