"""The latent space in TensorBoard's Projector tab: validation codes, a sprite of their images and
their labels (with the class names where the data has them), written through the public
``SummaryWriter.add_embedding``, so the codes can be turned around in PCA, t-SNE or UMAP views.

Written once, at the end of training, from the final weights (global rank 0, eval mode, no
autograd), into the run's TensorBoard folder; ``eval.py`` writes the same for a checkpoint into
its own ``tensorboard/`` folder (:func:`write_projectors`). A run without a TensorBoard logger
(``logger=csv``, ``logger=none``) skips it with one info line.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.tensorboard import SummaryWriter

from ae_lab.figures.base import FigureCallback, Rendered
from ae_lab.latent.codes import encode_images, sample_images

log = logging.getLogger(__name__)

#: TensorBoard's Projector refuses a sprite wider or taller than this many pixels
SPRITE_MAX = 8192
#: the embedding's name in the Projector (shown as ``val_codes:<step>``)
TAG = "val_codes"
#: label of an image without one (:mod:`ae_lab.data.arrays`)
UNLABELLED = -1


class Projector(FigureCallback):
    """Args:
    num_points: validation images embedded (all of them when the split is smaller).
    thumbnail: side in pixels of each image in the sprite: its centred square, shrunk, never
        enlarged, and smaller still where ``num_points`` thumbnails would make the sprite wider
        than TensorBoard's 8192 px.
    seed: picks the validation images.
    """

    name = "projector"

    def __init__(self, num_points: int = 1000, thumbnail: int = 64, seed: int = 0) -> None:
        super().__init__(seed=seed)
        for setting, value in (("num_points", num_points), ("thumbnail", thumbnail)):
            if value < 1:
                raise ValueError(f"callbacks.{self.name}.{setting} must be >= 1, got {value}")
        self.num_points = int(num_points)
        self.thumbnail = int(thumbnail)

    def render(self, model: L.LightningModule, data: L.LightningDataModule) -> Rendered:
        return {}  # no image files: the embedding goes to TensorBoard (write)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass  # once per run, at the end of fit

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # the end of fit, while the model is still on its device and the logger open
        if not trainer.is_global_zero or trainer.received_sigterm:
            return
        board = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if board is None:
            rank_zero_info(
                f"[{self.name}] not written: the run has no TensorBoard logger (logger=tensorboard)"
            )
            return
        self.write(board.experiment, pl_module, trainer.datamodule, trainer.global_step)

    def write(self, writer: Any, model: L.LightningModule, data: Any, step: int) -> Path:
        """The embedding of ``model``'s validation codes through ``writer.add_embedding`` at
        ``step``; returns the folder of its files (``tensors.tsv``, ``metadata.tsv``,
        ``sprite.png``), beside the ``projector_config.pbtxt`` that lists it."""
        images, labels = self.images(data)
        codes = encode_images(model, images)  # eval mode, no autograd, the mode restored
        metadata, header = label_metadata(labels, tuple(data.class_names))
        side = sprite_side(images.shape[-2:], len(images), self.thumbnail)
        writer.add_embedding(
            codes,
            metadata=metadata,
            label_img=thumbnails(images, side),
            global_step=step,
            tag=TAG,
            metadata_header=header,
        )
        logdir = Path(writer.get_logdir())
        log.info("projector: %d codes in %s", len(codes), logdir)
        return logdir / f"{step:05d}" / TAG

    def images(self, data: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The validation images (float, CPU) and their labels: ``num_points`` of them chosen by
        ``seed``, fewer where the split is smaller or they would exceed the float budget of
        :mod:`ae_lab.latent.codes`."""
        return sample_images(data, "val", self.num_points, self.seed)


def label_metadata(
    labels: torch.Tensor, class_names: tuple[str, ...]
) -> tuple[list[Any] | None, list[str] | None]:
    """``(metadata, header)`` for ``add_embedding``: a ``label`` and ``class`` column where the
    data names its classes, the label alone otherwise, and nothing for unlabelled images."""
    values = labels.tolist()
    if all(v == UNLABELLED for v in values):
        return None, None
    if not class_names:
        return values, None
    named = [class_names[v] if 0 <= v < len(class_names) else "" for v in values]
    return [[v, name] for v, name in zip(values, named, strict=True)], ["label", "class"]


def sprite_side(image_size: tuple[int, int], count: int, thumbnail: int) -> int:
    """Side of a square sprite thumbnail: ``thumbnail``, at most the image's shorter side, and
    small enough that ``ceil(sqrt(count))`` of them fit in :data:`SPRITE_MAX` pixels."""
    per_row = math.ceil(math.sqrt(count))
    return max(1, min(thumbnail, min(image_size), SPRITE_MAX // per_row))


def thumbnails(images: torch.Tensor, side: int) -> torch.Tensor:
    """Each image's centred square, area-averaged down to ``side x side`` (TensorBoard's sprite
    packs square cells); values stay in ``[0, 1]``."""
    height, width = images.shape[-2:]
    edge = min(height, width)
    top, left = (height - edge) // 2, (width - edge) // 2
    square = images[..., top : top + edge, left : left + edge]
    if edge == side:
        return square.contiguous()
    return F.interpolate(square, size=(side, side), mode="area")


def write_projectors(callbacks: list[L.Callback], model: Any, data: Any, logdir: Path) -> None:
    """Each :class:`Projector` of ``callbacks`` for ``model`` into the TensorBoard folder
    ``logdir`` (``eval.py``'s: its run has no logger), at step 0."""
    projectors = [c for c in callbacks if isinstance(c, Projector)]
    if not projectors:
        return
    writer = SummaryWriter(str(logdir))
    try:
        for projector in projectors:
            projector.write(writer, model, data, step=0)
    finally:
        writer.close()
