"""``run(cfg)``: build everything from the composed config, fit, evaluate, write ``metrics.json``.

How a run ends (see :mod:`ae_lab.errors` for the exit statuses):

- it finishes: ``metrics.json`` holds the final val/test metrics of the best weights, all finite;
- it diverges: :class:`~ae_lab.errors.RunFailed` (the guard, :mod:`ae_lab.callbacks.divergence`);
  no checkpoint of non-finite weights, no figure drawn from them, no ``metrics.json``;
- a signal stops it (:mod:`ae_lab.interrupts`): :class:`~ae_lab.errors.RunInterrupted`, whose
  message says what was saved and the command that resumes it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import math
import shlex
import signal
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.fabric.plugins import CheckpointIO
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.seed import isolate_rng
from omegaconf import DictConfig, OmegaConf

from ae_lab import atomic, interrupts, parallel, sweep_report
from ae_lab.callbacks.checkpoint import ResumableCheckpoint
from ae_lab.callbacks.divergence import DivergenceGuard
from ae_lab.callbacks.graceful_stop import GracefulStop
from ae_lab.callbacks.rng_state import RandomState
from ae_lab.checkpoint_io import AtomicCheckpointIO
from ae_lab.checks import build, check_checkpoint, check_config, check_splits, read_checkpoint
from ae_lab.errors import RunFailed, RunInterrupted
from ae_lab.run_dir import refuse_to_overwrite

log = logging.getLogger(__name__)

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _instantiate_all(group: DictConfig | None, name: str) -> list[Any]:
    """Every ``_target_`` entry of a dict-of-configs group (callbacks, loggers)."""
    if not group:
        return []
    return [
        build(entry, f"{name}.{key}")
        for key, entry in group.items()
        if entry and "_target_" in entry
    ]


def build_model(model_cfg: DictConfig, input_shape: tuple[int, ...]) -> L.LightningModule:
    """The model a ``model/`` config describes, sized for images of ``input_shape``.

    Nested parts (net, optimizer, corruption) reach the model as plain configs that it builds and
    keeps in its hyperparameters, so its checkpoints reload with ``weights_only=True``.
    """
    return build(model_cfg, "model", input_shape=input_shape, _recursive_=False, _convert_="all")


def _quiet_libraries() -> None:
    """One copy of each log line (through Hydra's handlers: console and the run's log file), and
    none of the deprecation notices that a user cannot act on."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler):
                logger.removeHandler(handler)
        logger.propagate = True
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def _callbacks(cfg: DictConfig) -> list[L.Callback]:
    """The configured callbacks, after those every run needs: the divergence guard first (it must
    check before a figure draws or a checkpoint is saved), the random state, the graceful stop."""
    fixed = [DivergenceGuard(), RandomState(), GracefulStop()]
    return [*fixed, *_instantiate_all(cfg.get("callbacks"), "callbacks")]


def _plugins(cfg: DictConfig) -> list[Any]:
    """``trainer.plugins``, plus atomic checkpoint writes unless a CheckpointIO is given."""
    given = cfg.trainer.get("plugins")
    if not given:
        plugins = []
    else:
        plugins = instantiate(given, _convert_="all")
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
    if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
        plugins.append(AtomicCheckpointIO())
    return plugins


def interruptible(run_fn: Callable[[DictConfig], dict[str, float]]) -> Callable:
    """Hold :func:`ae_lab.interrupts.handling_signals` for the whole run; a signal that arrives
    before the fit (reading the data, building the model) ends it with RunInterrupted."""

    @functools.wraps(run_fn)
    def wrapper(cfg: DictConfig) -> dict[str, float]:
        with interrupts.handling_signals():
            try:
                return run_fn(cfg)
            except KeyboardInterrupt:  # Ctrl-C, or SIGTERM as interrupts.Terminated
                signum = interrupts.received() or signal.SIGINT
                raise RunInterrupted(
                    f"stopped by {interrupts.NAMES[signum]} before training started; nothing "
                    "was trained or saved.",
                    signum,
                ) from None

    return wrapper


def setup(cfg: DictConfig) -> tuple[L.LightningDataModule, L.LightningModule, L.Trainer]:
    """Check every setting, then build the data, the model and the trainer. Nothing is trained
    yet: any bad setting has been refused here with a :class:`~ae_lab.errors.UserError`."""
    parallel.share_cores()  # a job of a joblib sweep: its share of the cores, not all of them
    check_config(cfg)  # types, ranges, run length: before anything is loaded
    saved = read_checkpoint(cfg.ckpt_path) if cfg.get("ckpt_path") else None
    if rank_zero_only.rank == 0:  # train.py has claimed the directory; this guards run(cfg) calls
        refuse_to_overwrite(cfg.paths.output_dir)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.get("matmul_precision"):
        torch.set_float32_matmul_precision(cfg.matmul_precision)

    datamodule = build(cfg.data, "data")
    datamodule.prepare_data()  # finds, downloads or caches the files; a short error when it cannot
    check_splits(datamodule, cfg.data)
    model = build_model(cfg.model, datamodule.image_shape)
    if saved is not None:
        check_checkpoint(saved, model)  # a checkpoint of this model and image size
    trainer: L.Trainer = build(
        cfg.trainer,
        "trainer",
        callbacks=_callbacks(cfg),
        logger=_instantiate_all(cfg.get("logger"), "logger") or False,
        plugins=_plugins(cfg),
    )
    return datamodule, model, trainer


@interruptible
def run(cfg: DictConfig) -> dict[str, float]:
    """Train ``cfg.model`` on ``cfg.data`` and return the final val/test metrics."""
    _quiet_libraries()
    output_dir = Path(cfg.paths.output_dir)
    datamodule, model, trainer = setup(cfg)
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    fit(trainer, model, datamodule, cfg)
    metrics = evaluate(trainer, model, datamodule, cfg)
    if trainer.is_global_zero:
        write_metrics(output_dir, metrics)
        sweep_report.write_reconstructions(model, datamodule, output_dir)  # the evaluated weights
    return metrics


# ---- fit ------------------------------------------------------------------------------------------
def fit(trainer: L.Trainer, model: L.LightningModule, datamodule: Any, cfg: DictConfig) -> None:
    """``trainer.fit``; a signal ends it with RunInterrupted, saying what was saved and how to resume."""
    try:
        with _signals_end_the_run(
            during=lambda signum: _stopped_in_fit(trainer, cfg, signum),
            after=lambda signum: _stopped_after_fit(trainer, cfg, signum),
        ):
            trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    except OSError as error:
        if error.errno not in DISK_FULL:
            raise
        raise RunFailed(_disk_full(trainer, cfg, error)) from None


@contextlib.contextmanager
def _signals_end_the_run(
    during: Callable[[int], str], after: Callable[[int], str]
) -> Iterator[None]:
    """A signal (see :mod:`ae_lab.interrupts`) ends the run with RunInterrupted: ``during(signum)``
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


def _disk_full(trainer: L.Trainer, cfg: DictConfig, error: OSError) -> str:
    kept = _kept_checkpoint(trainer, cfg)
    where = f" writing {error.filename}" if error.filename else ""
    if kept:
        return (
            f"no space left on the device{where}. The checkpoints written before are whole "
            f"(every file is written to a temporary name first); the newest is {kept}. Free some "
            f"space, then resume with:\n  {resume_command(cfg, kept)}"
        )
    return f"no space left on the device{where}; no checkpoint had been saved yet."


def _stopped_in_fit(trainer: L.Trainer, cfg: DictConfig, signum: int) -> str:
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
    earlier = _kept_checkpoint(trainer, cfg)
    if earlier:
        return (
            f"{head}, without saving (stopped at once); the last checkpoint kept is {earlier}. "
            f"Resume from it with:\n  {resume_command(cfg, earlier)}"
        )
    return f"{head}; no checkpoint had been saved yet. Start again with:\n  {resume_command(cfg, None)}"


def _stopped_after_fit(trainer: L.Trainer, cfg: DictConfig, signum: int) -> str:
    last = _kept_checkpoint(trainer, cfg)
    again = f" Evaluate it with:\n  {resume_command(cfg, last)}" if last else ""
    return (
        f"stopped by {interrupts.NAMES[signum]} after training finished, before the final "
        f"evaluation: the checkpoints are kept, metrics.json was not written.{again}"
    )


def _kept_checkpoint(trainer: L.Trainer, cfg: DictConfig) -> str | None:
    """The newest checkpoint to resume from: this run's last.ckpt, else the one it resumed from."""
    callback = trainer.checkpoint_callback
    last = callback.last_model_path if isinstance(callback, ModelCheckpoint) else ""
    if last and Path(last).is_file():
        return last
    return cfg.get("ckpt_path")


def resume_command(cfg: DictConfig, ckpt_path: str | None) -> str:
    """``python train.py <this run's overrides> ckpt_path=<ckpt_path>``."""
    overrides = []
    if HydraConfig.initialized():
        overrides = [
            o for o in HydraConfig.get().overrides.task
            if o.lstrip("+~").split("=", 1)[0] != "ckpt_path"
        ]  # fmt: skip
    if ckpt_path:
        overrides.append(f"ckpt_path={Path(ckpt_path).resolve()}")
    return " ".join(["python train.py", *map(shlex.quote, overrides)])


# ---- evaluate -------------------------------------------------------------------------------------
def evaluate(
    trainer: L.Trainer, model: L.LightningModule, datamodule: Any, cfg: DictConfig
) -> dict[str, float | None]:
    """Validate and test the same weights, the best checkpoint when there is one.

    Seeded (``cfg.seed``, or 0) inside an isolated RNG: the same weights give the same metrics
    whatever ran before them (one fit or a resumed one), and a later evaluation of the checkpoint
    reproduces them.
    """
    best = trainer.checkpoint_callback
    weights = "best" if isinstance(best, ModelCheckpoint) and best.best_model_path else None
    metrics: dict[str, Any] = {}
    stopped = functools.partial(_stopped_after_fit, trainer, cfg)
    with isolate_rng():
        torch.manual_seed(cfg.get("seed") or 0)
        for stage in (trainer.validate, trainer.test):
            with _signals_end_the_run(during=stopped, after=stopped):
                for result in stage(model, datamodule=datamodule, ckpt_path=weights, verbose=False):
                    metrics.update(result)
    metrics = _numbers(metrics)
    broken = sorted(k for k, v in metrics.items() if v is None and k.endswith("loss"))
    if broken:
        raise RunFailed(
            f"the final evaluation of the {'best' if weights else 'last'} weights gave a "
            f"non-finite {', '.join(broken)}; metrics.json was not written."
        )
    return metrics


def _numbers(metrics: dict[str, Any]) -> dict[str, float | None]:
    out = {}
    for key, value in metrics.items():
        number = float(value.item() if isinstance(value, torch.Tensor) else value)
        out[key] = number if math.isfinite(number) else None  # JSON has no NaN or inf
    return out


def write_metrics(output_dir: Path, metrics: dict[str, float | None]) -> None:
    """``metrics.json`` (written atomically: whole or absent), and the test metrics in the log."""
    atomic.write_text(
        output_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n"
    )
    shown = ", ".join(
        f"{key} {value:.4g}" for key, value in sorted(metrics.items())
        if key.startswith("test/") and value is not None
    )  # fmt: skip
    log.info("run directory: %s (%s)", output_dir, shown)
