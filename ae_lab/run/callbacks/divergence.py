"""Stop a diverging run before anything is drawn or saved from its non-finite weights.

A NaN or infinite loss (a learning rate far too high, an exploding gradient) poisons the weights
at the next optimizer step. Left alone, the run goes on: Lightning saves NaN weights as ``best`` and
``last``, the figures draw NaNs (or a figure's SVD raises ``LinAlgError``), and ``metrics.json``
fills with nulls. :class:`DivergenceGuard` raises :class:`~ae_lab.errors.RunFailed` instead, saying
where it happened, the likely cause and fix, and which checkpoints (all holding finite weights) are
kept.

It must come first in the trainer's callbacks: Lightning calls callback hooks in list order (and
moves ``ModelCheckpoint`` last), so the guard checks before a figure draws at the end of a
validation epoch and before a checkpoint is compared or written.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn

from ae_lab.errors import RunFailed


def finite_weights(module: torch.nn.Module) -> bool:
    """Whether every floating-point parameter and buffer of ``module`` is finite (one sync)."""
    tensors = [
        t
        for t in itertools.chain(module.parameters(), module.buffers())
        if t.is_floating_point() and t.numel()
    ]
    if not tensors:
        return True
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


class DivergenceGuard(L.Callback):
    """Raise :class:`~ae_lab.errors.RunFailed` as soon as training stops being finite.

    What it checks, and when:
    - the loss ``training_step`` returned, after every step. On the CPU of a single process that
      costs one float read. On an accelerator, or under DDP, a step only keeps a reference to
      its loss tensor (no kernel, no sync); the losses are checked together every
      ``check_every_n_steps`` steps (by default the trainer's ``log_every_n_steps``, where logging
      syncs anyway), at the end of every epoch and before a checkpoint, and reduced over the ranks
      so that all of them stop at the same step;
    - the weights, at the end of each validation epoch (before the figures draw) and before any
      checkpoint is written (a checkpoint of non-finite weights is never saved);
    - the monitored validation metric (``monitor``), once validation has aggregated it, before
      ``ModelCheckpoint`` compares it.

    Args:
        monitor: the validation loss to check (``ModelCheckpoint``'s ``monitor``).
        check_every_n_steps: how often the kept losses are checked; ``None``: the trainer's
            ``log_every_n_steps``.
        defer: check the losses only at those points; ``None``: on an accelerator or under DDP.
    """

    def __init__(
        self,
        monitor: str = "val/loss",
        check_every_n_steps: int | None = None,
        defer: bool | None = None,
    ) -> None:
        super().__init__()
        self.monitor = monitor
        self.check_every_n_steps = check_every_n_steps
        self.defer = defer
        self._immediate = True
        self._every = 1
        self._losses: list[tuple[torch.Tensor, int, int, int]] = []  # (loss, step, epoch, batch)
        self._last_save: tuple[int, int] | None = None  # (epoch, step) of the last checkpoint

    # ---- set-up --------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        on_cpu_alone = trainer.strategy.root_device.type == "cpu" and trainer.world_size == 1
        self._immediate = on_cpu_alone if self.defer is None else not self.defer
        self._every = max(1, int(self.check_every_n_steps or trainer.log_every_n_steps or 1))
        self._losses = []

    # ---- the training loss -----------------------------------------------------------------
    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        if self._immediate:  # (the trainer's step and epoch are read only to report a failure)
            value = float(loss)
            if not math.isfinite(value):
                where = _where(trainer.current_epoch, trainer.global_step, batch_idx)
                self._fail(trainer, f"the training loss became {value} at {where}")
            return
        # on the device: keep the (detached) loss and read them together at the next check
        step = trainer.global_step
        self._losses.append((loss, step, trainer.current_epoch, batch_idx))
        if step % self._every == 0:
            self._check_losses(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check_losses(trainer)
        self._check_weights(trainer, pl_module, "at the end of the epoch")

    def _check_losses(self, trainer: L.Trainer) -> None:
        if self._immediate:
            return
        losses, self._losses = self._losses, []
        first_bad = None
        if losses:
            finite = torch.isfinite(torch.stack([loss for loss, *_ in losses]))
            if not bool(finite.all()):
                first_bad = losses[int((~finite).nonzero()[0, 0])][1:]
        if trainer.strategy.reduce_boolean_decision(first_bad is not None, all=False):
            if first_bad is not None:
                step, epoch, batch = first_bad
                where = f"at {_where(epoch, step, batch)}"
            else:
                where = f"on another process by step {trainer.global_step}"
            self._fail(trainer, f"the training loss became non-finite {where}")

    # ---- weights and the validation loss -----------------------------------------------------
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not _fitting(trainer):
            return
        self._check_losses(trainer)
        self._check_weights(trainer, pl_module, "before validation's figures were drawn")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not _fitting(trainer):
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None and not math.isfinite(float(value)):
            self._fail(
                trainer,
                f"{self.monitor} became {float(value)} at epoch {trainer.current_epoch} "
                f"(step {trainer.global_step})",
            )

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._check_losses(trainer)
        self._check_weights(trainer, pl_module, "when a checkpoint was about to be saved")
        self._last_save = (int(checkpoint.get("epoch", -1)), int(checkpoint.get("global_step", -1)))

    def _check_weights(self, trainer: L.Trainer, pl_module: L.LightningModule, when: str) -> None:
        if not finite_weights(pl_module):
            self._fail(
                trainer,
                f"the weights became non-finite by epoch {trainer.current_epoch}, "
                f"step {trainer.global_step} ({when})",
            )

    # ---- the message ---------------------------------------------------------------------------
    def _fail(self, trainer: L.Trainer, what: str) -> None:
        lr = _learning_rate(trainer)
        raise RunFailed(
            f"training diverged: {what}. The usual cause is a learning rate too high for this "
            f"model{f' (it was {lr:g})' if lr is not None else ''}: start again with a lower "
            "model.optimizer.lr (try 10x lower), or clip gradients with "
            f"trainer.gradient_clip_val=1.0. {self._kept(trainer)} metrics.json was not written."
        )

    def _kept(self, trainer: L.Trainer) -> str:
        callback = trainer.checkpoint_callback
        files: list[str] = []
        if isinstance(callback, ModelCheckpoint):
            for path in dict.fromkeys((callback.last_model_path, callback.best_model_path)):
                if path and Path(path).is_file():
                    files.append(str(path))
        if files:
            when = ""
            if self._last_save is not None:
                when = f", the last saved at epoch {self._last_save[0]}, step {self._last_save[1]}"
            return f"Kept, with finite weights: {', '.join(files)}{when}."
        if trainer.ckpt_path:
            return (
                f"No checkpoint was written by this run; it had resumed from {trainer.ckpt_path}."
            )
        return "No checkpoint was written (it diverged before the first one was due)."


def _fitting(trainer: L.Trainer) -> bool:
    return trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking


def _where(epoch: int, step: int, batch: int) -> str:
    return f"epoch {epoch}, batch {batch} (training step {step})"


def _learning_rate(trainer: L.Trainer) -> float | None:
    try:
        return float(trainer.optimizers[0].param_groups[0]["lr"])
    except (IndexError, KeyError, TypeError, ValueError):
        return None
