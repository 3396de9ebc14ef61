"""What every figure callback shares: when to draw, how to draw safely, where the files go.

A subclass implements ``render(model, data) -> {key: image or frames}`` from the model's public API
(:class:`~ae_lab.models.Autoencoder`) and the datamodule's (``sample_batch``, ``split_size``,
``class_names``), so ``eval.py`` draws the same figures from a checkpoint: an ``H x W x 3``
uint8 array becomes ``figures/<name>/<key>_epoch<NNN>.png``; a list of such arrays becomes an
animated ``.gif`` beside it. Each is also logged to TensorBoard as the image ``<name>/<key>`` (for a
GIF, the frame halfway along its forward pass).

Drawing happens at the end of a validation epoch while fitting, on global rank 0 only, with the model in eval
mode under ``torch.no_grad()``; train mode is restored afterwards. Inputs come from the
datamodule's ``sample_batch`` with a fixed seed, so frames compare across epochs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info
from tensorboard.compat.proto.summary_pb2 import Summary

from ae_lab import viz

Rendered = dict[str, np.ndarray | list[np.ndarray]]


@contextlib.contextmanager
def evaluating(module: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no autograd inside; the module's previous mode restored after."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


class FigureCallback(L.Callback):
    """Args:
    every_n_epochs: draw after every n-th validation epoch (and always after the last).
    num_examples: how many validation images the figure shows.
    seed: picks the validation images (and any noise) — fixed, so epochs compare.
    """

    name = "figure"
    frame_ms = 60  # duration of a GIF frame
    #: what the model must support to draw this figure: a field of ``model.supports``
    #: (``prior``, ``corruption``, ``linear_map``), or None for every model
    needs: str | None = None

    def __init__(self, every_n_epochs: int = 1, num_examples: int = 8, seed: int = 0) -> None:
        super().__init__()
        for setting, value in (("every_n_epochs", every_n_epochs), ("num_examples", num_examples)):
            if value < 1:
                raise ValueError(f"callbacks.{self.name}.{setting} must be >= 1, got {value}")
        self.every_n_epochs = int(every_n_epochs)
        self.num_examples = int(num_examples)
        self.seed = int(seed)
        self._told_skip = False

    # ---- to implement ------------------------------------------------------------------------
    def applies_to(self, model: L.LightningModule) -> bool:
        """Whether this figure makes sense for the model, from what it declares it supports
        (``model.supports``: a heatmap of W2·W1 needs a linear map)."""
        return self.needs is None or bool(getattr(model.supports, self.needs))

    def render(self, model: L.LightningModule, data: L.LightningDataModule) -> Rendered:
        """The figure(s), drawn from ``model`` (in eval mode, under ``no_grad``) and ``data``."""
        raise NotImplementedError

    # ---- helpers for subclasses ----------------------------------------------------------------
    def examples(
        self, model: L.LightningModule, data: L.LightningDataModule, n: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed validation images (on the model's device) and their labels."""
        images, labels = data.sample_batch(
            self.num_examples if n is None else n, split="val", seed=self.seed
        )
        return images.to(model.device), labels

    def draw(self, model: L.LightningModule, data: L.LightningDataModule) -> Rendered:
        """:meth:`render` in eval mode under ``no_grad``, the model's mode restored after."""
        with evaluating(model):
            return self.render(model, data)

    # ---- Lightning -----------------------------------------------------------------------------
    def _due(self, trainer: L.Trainer) -> bool:
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
        return epoch % self.every_n_epochs == 0 or last or bool(trainer.fast_dev_run)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        fitting = trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking
        if not fitting or not trainer.is_global_zero or not self._due(trainer):
            return
        if not self.applies_to(pl_module):
            if not self._told_skip:
                needed = self.needs.replace("_", " ")
                rank_zero_info(f"[{self.name}] not drawn: the model has no {needed}")
                self._told_skip = True
            return
        self._write(trainer, self.draw(pl_module, trainer.datamodule))

    def _write(self, trainer: L.Trainer, rendered: Rendered) -> None:
        folder = Path(trainer.default_root_dir) / "figures" / self.name
        folder.mkdir(parents=True, exist_ok=True)
        stamp = f"epoch{trainer.current_epoch:03d}"
        tensorboard = next(
            (lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None
        )
        for key, value in rendered.items():
            animated = isinstance(value, list)
            # a GIF is previewed by its forward pass's midpoint (a quarter into the ping-pong loop)
            preview = value[len(value) // 4] if animated else value
            png = viz.encode_png(preview)
            if animated:
                viz.save_gif(value, folder / f"{key}_{stamp}.gif", frame_ms=self.frame_ms)
            else:
                (folder / f"{key}_{stamp}.png").write_bytes(png)
            if tensorboard is not None:
                log_png(tensorboard, f"{self.name}/{key}", png, preview.shape, trainer.global_step)


def log_png(logger: TensorBoardLogger, tag: str, png: bytes, shape: tuple, step: int) -> None:
    """Log already-encoded PNG bytes as a TensorBoard image (``add_image`` would resample and
    encode the array again, which costs more than drawing the figure)."""
    height, width, channels = shape
    image = Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=png)
    summary = Summary(value=[Summary.Value(tag=tag, image=image)])
    logger.experiment._get_file_writer().add_summary(summary, step)


def chunk_size(module: torch.nn.Module) -> int:
    """Images per forward pass in a figure: about 4M input values, so full-size faces fit too."""
    return max(1, (1 << 22) // int(np.prod(module.input_shape)))


def encode_all(module: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``module.encode`` over many images, a chunk at a time."""
    return torch.cat([module.encode(part) for part in images.split(chunk_size(module))])


def decode_all(module: torch.nn.Module, codes: torch.Tensor) -> torch.Tensor:
    """``module.decode`` over many codes, a chunk at a time."""
    return torch.cat([module.decode(part) for part in codes.split(chunk_size(module))])
