"""Callbacks that make faults happen at a chosen point of a run, added to a composed config as
``+callbacks.<name>._target_=tests.helpers.callbacks.<Class>``."""

from __future__ import annotations

import os
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

from ae_lab.figures.base import FigureCallback, chunk_size, decode_all


class SignalAt(L.Callback):
    """Send ``signum`` to this process ``times`` times when training batch ``batch`` of epoch
    ``epoch`` starts (or, with ``in_validation``, when that validation batch starts)."""

    def __init__(
        self, epoch: int, batch: int, signum: int = 15, times: int = 1, in_validation: bool = False
    ) -> None:
        self.epoch, self.batch, self.signum = epoch, batch, signum
        self.times, self.in_validation = times, in_validation

    def _maybe_signal(self, trainer: L.Trainer, batch_idx: int) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            for _ in range(self.times):
                os.kill(os.getpid(), self.signum)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.in_validation:
            self._maybe_signal(trainer, batch_idx)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if self.in_validation and not trainer.sanity_checking:
            self._maybe_signal(trainer, batch_idx)


class PoisonWeights(L.Callback):
    """Turn one weight into NaN when epoch ``epoch`` starts: the next loss is NaN."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                next(pl_module.parameters()).view(-1)[0] = float("nan")


class SlowFigure(FigureCallback):
    """A figure that decodes ``chunks`` chunks of codes, sleeping a little before each, and sends
    ``signum`` to this process as it starts when ``signum`` is set. Records, as it starts,
    whether this epoch's checkpoint already exists, and how many chunks it drew."""

    name = "slow_figure"

    def __init__(self, chunks: int = 50, signum: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.chunks, self.signum = chunks, signum
        self.checkpoint_seen: list[bool] = []
        self.drawn = 0

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        folder = Path(trainer.default_root_dir) / "checkpoints"
        self.checkpoint_seen.append((folder / "last.ckpt").is_file())
        (folder.parent / "slow_figure_saw_checkpoint").write_text(str(self.checkpoint_seen[-1]))
        super().on_train_epoch_end(trainer, pl_module)

    def render(self, model, data):
        if self.signum is not None:
            os.kill(os.getpid(), self.signum)
        codes = torch.zeros(chunk_size(model), model.latent_dim, device=model.device)
        for _ in range(self.chunks):
            time.sleep(0.05)
            decode_all(model, codes)
            self.drawn += 1
        return {"figure": np.zeros((8, 8, 3), np.uint8)}


class AllocateTooMuch(L.Callback):
    """Ask the allocator for far more memory than any machine has, for real, at ``where``:
    ``step`` (a training batch of epoch ``epoch``) or ``test`` (the final evaluation)."""

    def __init__(self, where: str = "step", epoch: int = 1) -> None:
        self.where, self.epoch = where, epoch

    @staticmethod
    def _allocate() -> None:
        torch.empty(1 << 50, dtype=torch.uint8)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.where == "step" and trainer.current_epoch == self.epoch:
            self._allocate()

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if self.where == "test":
            self._allocate()


class FigureTooLarge(FigureCallback):
    """A figure whose drawing asks for far more memory than any machine has."""

    name = "too_large"

    def render(self, model, data):
        return {"figure": torch.empty(1 << 50, dtype=torch.uint8).numpy()}
