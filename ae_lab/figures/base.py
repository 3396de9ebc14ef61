"""What every figure callback shares: when to draw, how to draw safely, where the files go.

A subclass implements ``render(model, data) -> {key: image or frames}`` from the model's public API
(:class:`~ae_lab.models.Autoencoder`) and the datamodule's (``sample_batch``, ``split_size``,
``class_names``), so ``eval.py`` draws the same figures from a checkpoint (:func:`save_figures`).
An ``H x W x 3`` uint8 array becomes ``figures/<name>/<key>_epoch<NNN>.png``; a list of them an
animated ``.gif`` beside it. Each is also logged to TensorBoard as the image ``<name>/<key>``, at
most :data:`CARD_WIDTH` pixels wide so it is legible on a default card; a GIF is logged as the GIF
itself, which TensorBoard plays.

Drawing happens at the end of a training epoch while fitting, after its validation and its
checkpoint (a figure can never cost the epoch's checkpoint), on global rank 0 only, with the model
in eval mode under ``torch.no_grad()``; train mode is restored afterwards. A stop asked for while a
figure draws (SIGTERM, Ctrl-C) ends the drawing at its next chunk of images: the figure is left
out and the run stops as it would between batches. Inputs come from
the datamodule's ``sample_batch`` with a fixed seed, so frames compare across epochs. Left at
``every_n_epochs: null``, a figure is drawn about ``frames_per_run`` times over the run (and always
after the last epoch), so a short run still has frames to scrub through.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info

from ae_lab import atomic
from ae_lab.figures import drawing

Rendered = dict[str, np.ndarray | list[np.ndarray]]
#: widest image logged to TensorBoard: a default Time Series image card shows about this much
CARD_WIDTH = 480


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


def encoded(value: np.ndarray | list[np.ndarray], frame_ms: int) -> tuple[bytes, str]:
    """``(bytes, suffix)``: a PNG of an image, a looping GIF of frames."""
    if isinstance(value, list):
        return drawing.encode_gif(value, frame_ms), ".gif"
    return drawing.encode_png(value), ".png"


def write_encoded_image(
    writer: Any, tag: str, data: bytes, height: int, width: int, step: int
) -> None:
    """Already-encoded PNG or GIF bytes as a TensorBoard image, through the writer's public
    ``file_writer`` (a GIF plays as an animation; ``add_image`` takes pixels, one frame)."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    if writer.file_writer is None:  # the logger was closed: the run is over
        return
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=data)
    writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)


def save_figures(
    rendered: Rendered, folder: Path, frame_ms: int = 60, stamp: str = ""
) -> list[Path]:
    """Each rendered figure as ``folder/<key><stamp>.png`` (or ``.gif``), written atomically."""
    paths = []
    for key, value in rendered.items():
        data, suffix = encoded(value, frame_ms)
        paths.append(folder / f"{key}{stamp}{suffix}")
        atomic.write_bytes(paths[-1], data)
    return paths


class FigureCallback(L.Callback):
    """Args:
    every_n_epochs: draw after every n-th validation epoch (and always after the last); null:
        about ``frames_per_run`` times over the run.
    num_examples: how many validation images the figure shows.
    seed: picks the validation images (and any noise) — fixed, so epochs compare.
    """

    name = "figure"
    frame_ms = 60  # duration of a GIF frame
    frames_per_run = 10  # draws over a run when every_n_epochs is null
    #: what the model must support to draw this figure: a field of ``model.supports``
    #: (``prior``, ``corruption``, ``linear_map``), or None for every model
    needs: str | None = None

    def __init__(
        self, every_n_epochs: int | None = None, num_examples: int = 8, seed: int = 0
    ) -> None:
        super().__init__()
        for setting, value in (("every_n_epochs", every_n_epochs), ("num_examples", num_examples)):
            if value is not None and value < 1:
                raise ValueError(f"callbacks.{self.name}.{setting} must be >= 1, got {value}")
        self.every_n_epochs = None if every_n_epochs is None else int(every_n_epochs)
        self.num_examples = int(num_examples)
        self.seed = int(seed)
        self._every = self.every_n_epochs or 1
        self._told_skip = False

    # ---- to implement ------------------------------------------------------------------------
    def applies_to(self, model: L.LightningModule) -> bool:
        """Whether this figure makes sense for the model, from what it declares it supports
        (``model.supports``: a heatmap of W2·W1 needs a linear map)."""
        return self.needs is None or bool(getattr(model.supports, self.needs))

    def render(self, model: L.LightningModule, data: L.LightningDataModule) -> Rendered:
        """The figure(s), drawn from ``model`` (in eval mode, under ``no_grad``) and ``data``."""
        raise NotImplementedError

    def card_view(self, key: str, image: np.ndarray) -> np.ndarray:
        """What TensorBoard shows of a still image: the image, shrunk to :data:`CARD_WIDTH`."""
        return drawing.fit_width(image, CARD_WIDTH)

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
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        auto = math.ceil(epochs / self.frames_per_run) if epochs else 1
        self._every = self.every_n_epochs or auto

    def _due(self, trainer: L.Trainer) -> bool:
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
        return epoch % self._every == 0 or last or bool(trainer.fast_dev_run)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or not self._due(trainer) or trainer.received_sigterm:
            return
        if not self.applies_to(pl_module):
            if not self._told_skip:
                needed = self.needs.replace("_", " ")
                rank_zero_info(f"[{self.name}] not drawn: the model has no {needed}")
                self._told_skip = True
            return
        try:
            with stoppable(lambda: trainer.received_sigterm):
                rendered = self.draw(pl_module, trainer.datamodule)
        except FigureStopped:
            rank_zero_info(f"[{self.name}] not drawn: the run is stopping")
            return
        folder = Path(trainer.default_root_dir) / "figures" / self.name
        save_figures(rendered, folder, self.frame_ms, stamp=f"_epoch{trainer.current_epoch:03d}")
        board = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if board is not None:
            self._log_cards(board.experiment, rendered, trainer.global_step)

    def _log_cards(self, writer, rendered: Rendered, step: int) -> None:
        for key, value in rendered.items():
            if isinstance(value, list):  # an animation: TensorBoard plays the GIF itself
                frames = [drawing.fit_width(frame, CARD_WIDTH) for frame in value]
                data, shape = drawing.encode_gif(frames, self.frame_ms), frames[0].shape
            else:
                card = self.card_view(key, value)
                data, shape = drawing.encode_png(card), card.shape
            write_encoded_image(writer, f"{self.name}/{key}", data, shape[0], shape[1], step)


class FigureStopped(Exception):
    """The run is stopping: the figure being drawn is left out."""


#: Whether the run is stopping, asked between chunks while a figure draws.
_stopping: list[Callable[[], bool]] = []


def _check_stop() -> None:
    if _stopping and _stopping[-1]():
        raise FigureStopped


@contextlib.contextmanager
def stoppable(stopping: Callable[[], bool]) -> Iterator[None]:
    """Inside, :func:`encode_all` and :func:`decode_all` raise :class:`FigureStopped` as soon as
    ``stopping()`` says so."""
    _stopping.append(stopping)
    try:
        yield
    finally:
        _stopping.pop()


def chunk_size(module: torch.nn.Module) -> int:
    """Images per forward pass in a figure: about 4M input values, so full-size faces fit too."""
    return max(1, (1 << 22) // int(np.prod(module.input_shape)))


def encode_all(module: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``module.encode`` over many images, a chunk at a time."""
    return torch.cat([checked(module.encode, part) for part in images.split(chunk_size(module))])


def decode_all(module: torch.nn.Module, codes: torch.Tensor) -> torch.Tensor:
    """``module.decode`` over many codes, a chunk at a time."""
    return torch.cat([checked(module.decode, part) for part in codes.split(chunk_size(module))])


def checked(step: Callable[[Any], torch.Tensor], part: Any) -> torch.Tensor:
    """``step(part)``, unless the run is stopping (:class:`FigureStopped`)."""
    _check_stop()
    return step(part)
