"""A Lightning callback that times training epochs, for benchmarks that run the lab as a user does.

Added to any run from the command line or a composed config, without touching the lab's code::

    python train.py +callbacks.timer._target_=benchmarks.timing.EpochTimer \\
        +callbacks.timer.path=epochs.jsonl

It relies only on Lightning's public callback hooks, so it survives refactors of the lab's models,
data and loop. Each training epoch is timed from ``on_train_epoch_start`` to
``on_train_epoch_end``, minus the validation loop run inside it (``on_validation_start`` to
``on_validation_end``); on a GPU the device is synchronised at each of those points. Checkpoint writing stays in: Lightning runs checkpoint callbacks after every
other callback, so their ``on_validation_end`` falls after this timer's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch


def batch_size_of(batch: Any) -> int:
    """Rows in the first tensor of ``batch`` (a tensor, or a tuple/list/dict holding tensors)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    if type(batch) in (tuple, list) and batch:  # the common case, without ABC checks (~2 us)
        return batch_size_of(batch[0])
    if isinstance(batch, Mapping):
        return batch_size_of(next(iter(batch.values())))
    if isinstance(batch, Sequence) and not isinstance(batch, str) and batch:
        return batch_size_of(batch[0])
    raise TypeError(f"cannot tell the batch size of a {type(batch).__name__}")


def synchronize(module: L.LightningModule) -> None:
    """Wait for the work queued on the module's accelerator, so wall times include it."""
    if module.device.type == "cuda":
        torch.cuda.synchronize(module.device)


class EpochTimer(L.Callback):
    """Seconds and samples of every training epoch (validation excluded).

    Args:
        path: a JSON-lines file; one line is appended per epoch, as soon as it ends:
            ``{"epoch", "seconds", "cpu_seconds", "samples", "steps", "validation_seconds",
            "parameters", "fit_start_unix", "first_step_unix"}`` (``cpu_seconds``: CPU time of the
            whole process, all threads, over the same span; ``fit_start_unix`` and
            ``first_step_unix``: ``time.time()`` when ``Trainer.fit`` started and when the run's
            first training step started, for start-up measurements). ``None``: kept in ``epochs`` only.
    """

    def __init__(self, path: str | None = None) -> None:
        super().__init__()
        self.path = Path(path) if path else None
        self.epochs: list[dict[str, Any]] = []
        self.parameters = 0
        self.first_step_unix: float | None = None
        self.fit_start_unix: float | None = None
        self._in_epoch = False
        self._start = self._validation_start = 0.0
        self._cpu_start = self._cpu_validation_start = 0.0
        self._excluded = self._cpu_excluded = 0.0
        self._samples = self._steps = 0
        # (wall, cpu, excluded, cpu excluded) when the epoch's last validation began
        self._validation_mark: tuple[float, float, float, float] | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fit_start_unix = time.time()
        self.parameters = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        synchronize(pl_module)
        self._in_epoch = True
        self._excluded = self._cpu_excluded = 0.0
        self._samples = self._steps = 0
        self._validation_mark = None
        self._cpu_start = time.process_time()
        self._start = time.perf_counter()

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.first_step_unix is None:
            self.first_step_unix = time.time()
        self._samples += batch_size_of(batch)
        self._steps += 1

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        synchronize(pl_module)
        self._validation_start = time.perf_counter()
        self._cpu_validation_start = time.process_time()
        if self._in_epoch:
            self._validation_mark = (
                self._validation_start, self._cpu_validation_start,
                self._excluded, self._cpu_excluded,
            )  # fmt: skip

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        synchronize(pl_module)
        if self._in_epoch:
            self._excluded += time.perf_counter() - self._validation_start
            self._cpu_excluded += time.process_time() - self._cpu_validation_start

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        synchronize(pl_module)
        # The epoch's training ends where its closing validation begins: what follows it (the
        # checkpoint written after validation, figures) is not the training loop's time.
        end, cpu_end, excluded, cpu_excluded = self._validation_mark or (
            time.perf_counter(),
            time.process_time(),
            self._excluded,
            self._cpu_excluded,
        )
        seconds = end - self._start - excluded
        cpu_seconds = cpu_end - self._cpu_start - cpu_excluded
        self._in_epoch = False
        record = {
            "epoch": trainer.current_epoch,
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "samples": self._samples,
            "steps": self._steps,
            "validation_seconds": self._excluded,
            "parameters": self.parameters,
            "fit_start_unix": self.fit_start_unix,
            "first_step_unix": self.first_step_unix,
        }
        self.epochs.append(record)
        if self.path is not None and trainer.is_global_zero:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


class EpochClock(EpochTimer):
    """An :class:`EpochTimer` without a hook at every batch, for benchmarks that compare the lab with
    a loop that has none (a hook call a batch, ~10 us in the loop, would be counted as the lab's).

    Steps are the epoch loop's completed batches, read when the epoch ends; samples are steps times
    the datamodule's ``batch_size``, which is right for a training loader whose batches are all full
    (the lab's, which drops an incomplete last batch). ``first_step_unix`` stays ``None``.
    """

    on_train_batch_start = L.Callback.on_train_batch_start  # (not overridden: never called)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._steps = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        self._samples = self._steps * trainer.datamodule.batch_size
        super().on_train_epoch_end(trainer, pl_module)
