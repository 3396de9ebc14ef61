"""``ModelCheckpoint`` for runs that stop and resume: ``last.ckpt`` is always the latest state, the
best survives the move to a new run directory, and a signal leaves a ``last.ckpt`` to resume from.

Since Lightning 2.6, ``save_last=True`` writes ``last.ckpt`` only when a top-k checkpoint is saved at
the same step: with ``save_top_k=1``, only when the monitored loss improves, so ``last.ckpt`` is a
stale copy of the best and resuming from it silently drops every epoch since. Here ``last.ckpt`` is
written at every checkpoint opportunity (each validation, or each epoch end without one), as before.

Every resume goes into a new run directory (a finished one is never written into). Lightning's
``ModelCheckpoint`` then drops what it knew of the best epochs ("The dirpath has changed ... won't
be reloaded"), so the resumed run's ``best`` counts only the epochs after the interruption, and the
post-fit evaluation may test a worse model than one it already had. :class:`ResumableCheckpoint`
keeps them: the earlier best files are copied into the new ``checkpoints/`` (atomically; the earlier
run's files are never touched), and their scores compete with the new epochs'. A best file that is
no longer there cannot be carried: the log says so and the best is chosen among the rest.

On SIGTERM (``timeout``, ``docker stop``, a cluster's preemption; also a first Ctrl-C, see
:mod:`ae_lab.run.interrupts`), Lightning stops at the end of the current batch and raises its
``SIGTERMException``; :meth:`ResumableCheckpoint.on_exception` then saves ``last.ckpt``, wherever in
the epoch that is. Lightning records the loop's position in the checkpoint (and
:class:`~ae_lab.data.batches.Batches` its place in the epoch's order), so resuming from it goes on
at the next batch. Nothing is saved on any other exception: a diverged run's weights are not worth
keeping, and a run stopped at once by a second Ctrl-C may be in the middle of an optimizer step.

A signal during a validation of the fit stops it at the end of its current batch
(:class:`~ae_lab.run.callbacks.GracefulStop`): a long validation never keeps a stopped run going.
Lightning cannot resume a half-done validation faithfully (its partial metrics are in no
checkpoint), so the ``last.ckpt`` saved there is the state the validation started from. The
training state does not change during a validation; two things do, and are put back: the random
generators' states (a VAE draws noise while validating), as taken at
:meth:`ResumableCheckpoint.on_validation_start`, and the loop's record of the validation, saved as
stopped inside its first batch, which Lightning resumes by running that validation again from its
start. Its metrics were never logged nor scored (Lightning does both when a validation ends), so
nothing half-done becomes a curve's point or the best.

With ``trainer.accumulate_grad_batches=k > 1``, a stop (or a validation) inside a window of ``k``
batches falls between optimizer steps: the gradients of the window's first batches exist only in
the parameters' ``.grad``, which no Lightning checkpoint holds, so a run resumed there would step
with the rest of the window only and drift from the run that never stopped. Refusing that stop
point would lose up to an epoch of work, and stopping only at a window's end would mean training on
after the signal. Keeping the gradients is simple and exact: a checkpoint written inside a window
holds them (``accumulated_gradients``, one tensor per parameter, loadable with ``weights_only``),
and :meth:`ResumableCheckpoint.on_train_start` puts them back before the resumed fit's first
batch, which adds its own to them as the uninterrupted run did. Under DDP each process holds the
gradients of its own batches, which one checkpoint cannot keep: a signal inside a window then saves
nothing (the previous ``last.ckpt`` stays, whole), and ``ckpt_path=`` refuses a checkpoint written
inside a window without them (:func:`ae_lab.run.resume.check_resume`).
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from ae_lab.atomic import copy_file
from ae_lab.errors import RunFailed, UserError
from ae_lab.run.callbacks import rng_state

log = logging.getLogger(__name__)

#: The key of the accumulated gradients in the callback's state of a checkpoint.
ACCUMULATED = "accumulated_gradients"
#: Where a checkpoint holds the progress of the fit's validation (Lightning's loop-state format).
VALIDATION_PROGRESS = ("loops", "fit_loop", "epoch_loop.val_loop.batch_progress")


def inside_window(trainer: L.Trainer) -> bool:
    """Whether the fit stands between two batches of one window of ``accumulate_grad_batches``:
    the batches done in this epoch are not a whole number of windows, and the last one (which
    steps whatever it has) has not been reached."""
    k = trainer.accumulate_grad_batches
    if k <= 1 or trainer.strategy.handles_gradient_accumulation:
        return False
    progress = trainer.fit_loop.epoch_loop.batch_progress
    done = progress.current.completed
    return done % k != 0 and not progress.is_last_batch and done < trainer.num_training_batches


class ResumableCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (same arguments), plus: the best checkpoints carried over into
    a new directory on resume, and ``last.ckpt`` saved when a signal stops the run.

    After a stop, :attr:`interrupt_path` is the checkpoint it saved (``None`` when none was) and
    :attr:`refused` the :class:`~ae_lab.errors.RunFailed` that prevented it (non-finite weights).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.interrupt_path: str | None = None
        self.refused: RunFailed | None = None
        self._training = False
        self._loading_to_fit = True
        self._gradients: dict[str, torch.Tensor] | None = None  # loaded, put back at train start
        self._validation_start: dict[str, Any] | None = None  # random states, while validating
        self._redo_validation = False  # saving a stop inside a validation

    @property
    def state_key(self) -> str:
        # The key Lightning's own ModelCheckpoint uses: checkpoints of either class resume into both.
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    # ---- last.ckpt at every save point ------------------------------------------------------------
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validation_start = None  # it ended: its metrics count, a stop now keeps them
        due = not self._should_skip_saving_checkpoint(trainer)
        super().on_validation_end(trainer, pl_module)
        if due and not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_skipped(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        due = not self._should_skip_saving_checkpoint(trainer)
        super().on_train_epoch_end(trainer, pl_module)
        if due and self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_skipped(trainer)

    def _save_last_if_skipped(self, trainer: L.Trainer) -> None:
        if self.save_last and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    # ---- a monitor no validation logs, refused before the first epoch ---------------------------
    def on_sanity_check_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Lightning refuses a ``monitor`` that nothing logs only when the first validation ends,
        an epoch later; the sanity check's validation has logged every ``val/`` value by now.
        (``train/`` values are logged only once training runs: left to Lightning.)"""
        super().on_sanity_check_end(trainer, pl_module)
        metrics = trainer.callback_metrics
        monitor = self.monitor
        if (
            monitor is None
            or monitor.startswith("train/")
            or monitor in {*metrics, "epoch", "step"}
        ):
            return
        logged = sorted(name for name in metrics if name.startswith("val/"))
        close = difflib.get_close_matches(monitor, logged, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UserError(
            f"callbacks.model_checkpoint.monitor={monitor}: no validation logs it{hint}; "
            f"give one of {', '.join(logged)}, or train/loss"
        )

    # ---- the best across directories -----------------------------------------------------------
    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # Lightning calls this just before load_state_dict, also when validate/test load weights
        self._loading_to_fit = trainer.state.fn == TrainerFn.FITTING

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not self._loading_to_fit:
            return  # evaluating a checkpoint's weights: what this run knows of its files stands
        self._gradients = state_dict.get(ACCUMULATED) or None
        earlier = state_dict.get("dirpath", self.dirpath)
        if self.dirpath is None or earlier == self.dirpath:
            super().load_state_dict(state_dict)
            return
        carried = {}
        for path, score in state_dict.get("best_k_models", {}).items():
            target = str(Path(self.dirpath) / Path(path).name)
            if not Path(path).is_file():
                log.warning(
                    "the earlier run's checkpoint %s (%s=%.6g) is gone: it cannot be carried over, "
                    "so the best is chosen among the other checkpoints and the epochs from now on",
                    path,
                    self.monitor,
                    float(score),
                )
                continue
            if rank_zero_only.rank == 0:
                copy_file(path, target)
                log.info("carried over the earlier best checkpoint %s into %s", path, target)
            carried[target] = score
        self.best_k_models = carried
        self.current_score = state_dict.get("current_score")
        if carried:
            best, worst = (min, max) if self.mode == "min" else (max, min)
            self.best_model_path = best(carried, key=carried.get)
            self.best_model_score = carried[self.best_model_path]
            self.kth_best_model_path = worst(carried, key=carried.get)
            self.kth_value = carried[self.kth_best_model_path]
        else:
            self.best_model_path, self.best_model_score = "", None

    # ---- the gradients of an accumulation window -------------------------------------------------
    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        progress = _validation_progress(checkpoint)
        if progress is not None:
            (_restart_validation if self._redo_validation else _settle_validation)(progress)
        state = (checkpoint.get("callbacks") or {}).get(self.state_key)
        if state is None or not inside_window(trainer) or trainer.world_size > 1:
            return
        state[ACCUMULATED] = {
            name: p.grad.detach().cpu().clone()
            for name, p in pl_module.named_parameters()
            if p.grad is not None
        }

    # ---- a signal: save last.ckpt --------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._training = True
        self.interrupt_path, self.refused = None, None
        if self._gradients:  # resumed inside an accumulation window: its batches so far
            for name, p in pl_module.named_parameters():
                if name in self._gradients:
                    p.grad = self._gradients[name].to(device=p.device, dtype=p.dtype)
        self._gradients = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._training = False

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_start(trainer, pl_module)
        if self._training and trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self._validation_start = rng_state.capture(pl_module.device)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if (
            not isinstance(exception, SIGTERMException)
            or not self._training
            or self.dirpath is None
        ):
            return
        if inside_window(trainer) and trainer.world_size > 1:
            log.warning(
                "stopped inside a window of trainer.accumulate_grad_batches=%d batches under DDP: "
                "each process holds the gradients of its own batches, which one checkpoint cannot "
                "keep, so last.ckpt is left as it was (resuming from here would not be exact)",
                trainer.accumulate_grad_batches,
            )
            return
        path = str(Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}")
        if self._validation_start is not None:  # inside a validation: the state it started from
            rng_state.restore(self._validation_start, pl_module.device)
            self._redo_validation = True
        try:
            trainer.save_checkpoint(path)
        except RunFailed as failure:  # the divergence guard refused non-finite weights
            self.refused = failure
            return
        finally:
            self._redo_validation = False
        self.last_model_path = self.interrupt_path = path


def _validation_progress(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    found: Any = checkpoint
    for key in VALIDATION_PROGRESS:
        found = found.get(key) if isinstance(found, dict) else None
    return found


def _restart_validation(progress: dict[str, Any]) -> None:
    """Record the validation under way as stopped inside its first batch: Lightning resumes such a
    checkpoint by running the validation again from its start ("restarted mid-evaluation")."""
    total, current = progress["total"], progress["current"]
    before = total["completed"] - current["completed"]  # the epoch's earlier validations' batches
    progress["total"] = {"ready": before + 1, "started": before + 1, "processed": before,
                         "completed": before}  # fmt: skip
    progress["current"] = {"ready": 1, "started": 1, "processed": 0, "completed": 0}
    progress["is_last_batch"] = False


def _settle_validation(progress: dict[str, Any]) -> None:
    """A run resumed by :func:`_restart_validation` keeps counting from its one-batch-ahead
    ``total``: put it back level, or a resume from a later checkpoint of that epoch would take it
    for a stop inside a validation and run one again."""
    total = progress["total"]
    if total["ready"] == total["started"] == total["processed"] + 1 == total["completed"] + 1:
        total["ready"] = total["started"] = total["completed"]
