"""How a run that is stopped or cannot go on tells the user what was kept and how to go on.

A signal (see :mod:`ae_lab.run.interrupts`) ends the run with :class:`~ae_lab.errors.RunInterrupted`
(exit 130 for Ctrl-C, 143 for SIGTERM) whose message names the checkpoint saved and the exact command
that resumes from it; a full disk ends it with :class:`~ae_lab.errors.RunFailed`, naming the whole
checkpoints written before (every file is written to a temporary name first).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import signal
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from ae_lab.errors import RunFailed, RunInterrupted
from ae_lab.layout import METRICS_FILE
from ae_lab.run import interrupts
from ae_lab.run.callbacks.checkpoint import ResumableCheckpoint
from ae_lab.run.commands import command, hydra_value

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def interruptible(run_fn: Callable[[DictConfig], dict[str, float]]) -> Callable:
    """Hold :func:`ae_lab.run.interrupts.handling_signals` for the whole run; a signal that arrives
    outside Lightning's loops (reading the data, building the model; after the fit, between the
    evaluation's stages, fitting PCA) ends it with RunInterrupted."""

    @functools.wraps(run_fn)
    def wrapper(cfg: DictConfig) -> dict[str, float]:
        with interrupts.handling_signals():
            try:
                return run_fn(cfg)
            except KeyboardInterrupt:  # Ctrl-C, or SIGTERM as interrupts.Terminated
                signum = interrupts.received() or signal.SIGINT
                raise RunInterrupted(stopped_outside_loops(cfg, signum), signum) from None
            except (MemoryError, RuntimeError, OSError) as error:
                failure = ran_out(error, cfg)
                if failure is None:
                    raise
                raise failure from None

    return wrapper


@contextlib.contextmanager
def signals_end_the_run(
    during: Callable[[int], str], after: Callable[[int], str]
) -> Iterator[None]:
    """A signal (see :mod:`ae_lab.run.interrupts`) ends the run with RunInterrupted: ``during(signum)``
    describes a stop inside the block, ``after(signum)`` one that arrived as it completed."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit) as stop:  # Lightning ends both in a SystemExit
        signum = interrupts.received()
        if signum is None and not isinstance(stop, KeyboardInterrupt):
            raise  # an exit that no signal asked for
        signum = signum or signal.SIGINT
        raise RunInterrupted(during(signum), signum) from None
    if (signum := interrupts.received()) is not None:
        raise RunInterrupted(after(signum), signum)


def disk_full(trainer: L.Trainer, cfg: DictConfig, error: OSError) -> str:
    kept = kept_checkpoint(trainer, cfg)
    where = f" writing {error.filename}" if error.filename else ""
    if kept:
        return (
            f"no space left on the device{where}. The checkpoints written before are whole "
            f"(every file is written to a temporary name first); the newest is {kept}. Free some "
            f"space, then resume with:\n  {resume_command(cfg, kept)}"
        )
    return f"no space left on the device{where}; no checkpoint had been saved yet."


def stopped_in_fit(trainer: L.Trainer, cfg: DictConfig, signum: int) -> str:
    callback = trainer.checkpoint_callback
    resumable = isinstance(callback, ResumableCheckpoint)
    if resumable and callback.refused is not None:  # the weights had diverged: no resume point
        raise callback.refused
    saved = callback.interrupt_path if resumable else None
    done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
    where = (
        f"in epoch {trainer.current_epoch} after step {trainer.global_step} "
        f"({done} of its {trainer.num_training_batches} batches)"
        if saved
        else f"in epoch {trainer.current_epoch}, step {trainer.global_step}"
    )
    head = f"stopped by {interrupts.NAMES[signum]} {where}"
    if saved:
        return f"{head}; saved {saved}. Resume with:\n  {resume_command(cfg, saved)}"
    earlier = kept_checkpoint(trainer, cfg)
    if earlier:
        return (
            f"{head}, without saving (stopped at once); the last checkpoint kept is {earlier}. "
            f"Resume from it with:\n  {resume_command(cfg, earlier)}"
        )
    return f"{head}; no checkpoint had been saved yet. Start again with:\n  {resume_command(cfg, None)}"


def stopped_outside_loops(cfg: DictConfig, signum: int) -> str:
    """Before the fit (this run has no ``last.ckpt``: a stop inside the fit ends there), after it,
    or once ``metrics.json`` is written."""
    output_dir, name = Path(cfg.paths.output_dir), interrupts.NAMES[signum]
    if not (output_dir / "checkpoints" / "last.ckpt").is_file():
        return f"stopped by {name} before training started; nothing was trained or saved."
    if (output_dir / METRICS_FILE).is_file():
        return (
            f"stopped by {name} after the final evaluation: the checkpoints and {METRICS_FILE} "
            "are kept; the report's reconstructions or TensorBoard's HParams may be missing."
        )
    return stopped_after_fit(None, cfg, signum)


def stopped_after_fit(trainer: L.Trainer | None, cfg: DictConfig, signum: int) -> str:
    last = kept_checkpoint(trainer, cfg) if trainer is not None else _newest_checkpoint(cfg)
    again = ""
    if last:
        evaluate = command("eval.py", [f"ckpt_path={hydra_value(str(Path(last).resolve()))}"])
        again = f" Evaluate it with:\n  {evaluate}"
    return (
        f"stopped by {interrupts.NAMES[signum]} after training finished, before the final "
        f"evaluation: the checkpoints are kept, metrics.json was not written.{again}"
    )


def kept_checkpoint(trainer: L.Trainer, cfg: DictConfig) -> str | None:
    """The newest checkpoint to resume from: this run's last.ckpt, else the one it resumed from."""
    callback = trainer.checkpoint_callback
    last = callback.last_model_path if isinstance(callback, ModelCheckpoint) else ""
    if last and Path(last).is_file():
        return last
    return cfg.get("ckpt_path")


def resume_command(cfg: DictConfig, ckpt_path: str | None, changes: Sequence[str] = ()) -> str:
    """``python train.py <this run's overrides> <changes> ckpt_path=<ckpt_path>``, to paste as it
    is (``changes``, ``key=value``, replace the run's own overrides of those keys)."""
    overrides = []
    replaced = {"ckpt_path", *(change.split("=", 1)[0] for change in changes)}
    if HydraConfig.initialized():
        overrides = [
            o for o in HydraConfig.get().overrides.task
            if o.lstrip("+~").split("=", 1)[0] not in replaced
        ]  # fmt: skip
    overrides += changes
    if ckpt_path:
        overrides.append(f"ckpt_path={hydra_value(str(Path(ckpt_path).resolve()))}")
    return command("train.py", overrides)


#: What torch says when an allocation fails, on the CPU and on a GPU.
OUT_OF_MEMORY = ("can't allocate memory", "out of memory", "not enough memory")
#: What torch.save says when a write fails (a full disk, on some file systems, is no OSError).
WRITE_FAILED = ("file write failed", "PytorchStreamWriter failed writing")


def ran_out(error: BaseException, cfg: DictConfig) -> RunFailed | None:
    """The failure to report when ``error`` is a resource running out (memory, disk): what ran
    out and where, the newest whole checkpoint, and the command that goes on; None otherwise."""
    text = str(error)
    memory = isinstance(error, MemoryError) or any(s in text for s in OUT_OF_MEMORY)
    disk = isinstance(error, OSError) and error.errno in (*DISK_FULL, errno.EIO, errno.EFBIG)
    disk = disk or (isinstance(error, RuntimeError) and any(s in text for s in WRITE_FAILED))
    if not memory and not disk:
        return None
    kept = _newest_checkpoint(cfg)
    where = _where(error)
    if disk:
        what = f"writing failed{where} (the disk is full?): {_first_line(text)}"
        fix, changes = "Free some space, then", ()
    else:
        device = "GPU memory" if "CUDA" in text or "HIP" in text else "memory"
        what = f"out of {device}{where}: {_first_line(text)}"
        batch = int(cfg.data.get("batch_size") or 2)
        changes = (f"data.batch_size={max(1, batch // 2)}",) if batch > 1 else ()
        fix = f"With a smaller batch ({changes[0]})" if changes else "With a smaller model,"
    if kept:
        return RunFailed(
            f"{what}. The newest whole checkpoint is {kept}. {fix} resume with:\n  "
            f"{resume_command(cfg, kept, changes)}"
        )
    return RunFailed(
        f"{what}. No checkpoint had been saved yet. {fix} start again with:\n  "
        f"{resume_command(cfg, None, changes)}"
    )


def _newest_checkpoint(cfg: DictConfig) -> str | None:
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    return str(last) if last.is_file() else cfg.get("ckpt_path")


def _where(error: BaseException) -> str:
    """`` while drawing a figure`` / `` in the final evaluation`` / `` while training``, from
    the code the error came through."""
    files = [frame.f_code.co_filename for frame, _ in traceback.walk_tb(error.__traceback__)]
    if any("/ae_lab/figures/" in f for f in files):
        return " while drawing a figure"
    if any(f.endswith(("/run/evaluate.py", "/run/eval_checkpoint.py")) for f in files):
        return " in the final evaluation"
    if any("/lightning/pytorch/loops/" in f for f in files):
        return " while training"
    return ""


def _first_line(text: str) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), text)
    return line[:200]
