"""``run(cfg)``: build everything from the composed config, fit, evaluate, write ``metrics.json``.

How a run ends (see :mod:`ae_lab.errors` for the exit statuses):

- it finishes: ``metrics.json`` holds the final val/test metrics of the best weights, all finite,
  and TensorBoard's HParams holds them beside the run's settings;
- it diverges: :class:`~ae_lab.errors.RunFailed` (the guard, :mod:`ae_lab.callbacks.divergence`);
  no checkpoint of non-finite weights, no figure drawn from them, no ``metrics.json``;
- a signal stops it (:mod:`ae_lab.interrupts`): :class:`~ae_lab.errors.RunInterrupted`, whose
  message says what was saved and the command that resumes it (:mod:`ae_lab.stopping`).
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_object, instantiate
from lightning.fabric.plugins import CheckpointIO
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from ae_lab import denormals, parallel, stopping, sweep_report, tb_logging
from ae_lab.callbacks import DivergenceGuard, GracefulStop, ProgressBar, RandomState, RunConfig
from ae_lab.checkpoint_io import AtomicCheckpointIO
from ae_lab.checkpoints import check_checkpoint, read_checkpoint
from ae_lab.checks import build, check_config, check_splits
from ae_lab.errors import RunFailed
from ae_lab.evaluate import evaluate_weights, write_metrics
from ae_lab.profiler import NoProfiler
from ae_lab.run_dir import refuse_to_overwrite

log = logging.getLogger(__name__)


def _instantiate_all(group: DictConfig | None, name: str, **kwargs: Any) -> list[Any]:
    """Every ``_target_`` entry of a dict-of-configs group (callbacks, loggers)."""
    if not group:
        return []
    return [
        build(entry, f"{name}.{key}", **kwargs.get(key, {}))
        for key, entry in group.items()
        if entry and "_target_" in entry
    ]


def build_model(model_cfg: DictConfig, input_shape: tuple[int, ...]) -> L.LightningModule:
    """The model a ``model/`` config describes, sized for images of ``input_shape``.

    Nested parts (net, optimizer, corruption) reach the model as plain configs that it builds and
    keeps in its hyperparameters, so its checkpoints reload with ``weights_only=True``.
    """
    return build(model_cfg, "model", input_shape=input_shape, _recursive_=False, _convert_="all")


def _no_advert(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("💡 Tip")  # Lightning's advert for its cloud logger


def quiet_libraries() -> None:
    """One copy of each log line (through Hydra's handlers: console and the run's log file), and
    none of the notices that a user cannot act on (deprecations, Lightning's adverts)."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler):
                logger.removeHandler(handler)
        logger.propagate = True
    advertiser = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if _no_advert not in advertiser.filters:
        advertiser.addFilter(_no_advert)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def hydra_job() -> tuple[list[str], dict[str, Any], bool]:
    """The job's overrides, its group choices and whether it is a sweep job (none outside
    Hydra)."""
    if not HydraConfig.initialized():
        return [], {}, False
    hydra = HydraConfig.get()
    overrides = list(hydra.overrides.task)
    choices = {k: v for k, v in hydra.runtime.choices.items() if not k.startswith("hydra/")}
    return overrides, choices, hydra.mode == RunMode.MULTIRUN


def _callbacks(cfg: DictConfig) -> list[L.Callback]:
    """The configured callbacks, after those every run needs: the divergence guard first (it must
    check before a figure draws or a checkpoint is saved), the random state, the graceful stop and
    the run's config kept in each checkpoint (for ``eval.py``)."""
    _, choices, _ = hydra_job()
    config = RunConfig(OmegaConf.to_yaml(cfg), {k: str(v) for k, v in choices.items()})
    fixed = [DivergenceGuard(), RandomState(), GracefulStop(), config]
    configured = _instantiate_all(cfg.get("callbacks"), "callbacks")
    if progress_bar(cfg) and not any(isinstance(c, TQDMProgressBar) for c in configured):
        fixed.append(ProgressBar())  # redrawn on a clock, not after every batch
    return [*fixed, *configured]


def progress_bar(cfg: DictConfig) -> bool:
    """``trainer.enable_progress_bar``, whose null means on, except in a job of a parallel sweep:
    jobs running at once would draw their bars over each other on the one terminal."""
    asked = cfg.trainer.get("enable_progress_bar")
    if asked is not None:
        return bool(asked)
    return (parallel.parallel_jobs() or 1) == 1


def _loggers(cfg: DictConfig) -> list[Any]:
    """The configured loggers; a sweep job's TensorBoard events go in a folder named by its
    overrides (``tensorboard/model=vae,model.beta=4/``), so its run says what differs."""
    overrides, _, in_sweep = hydra_job()
    versions = {}
    for key, entry in (cfg.get("logger") or {}).items():
        tensorboard = entry and str(entry.get("_target_", "")).endswith("TensorBoardLogger")
        if tensorboard and in_sweep and not entry.get("version"):
            swept = tb_logging.swept_keys(HydraConfig.get().sweep.dir)
            versions[key] = {"version": tb_logging.run_name(overrides, swept)}
    return _instantiate_all(cfg.get("logger"), "logger", **versions)


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


def _is_figure(target: Any) -> bool:
    from ae_lab.callbacks import FigureCallback

    try:
        found = get_object(str(target))
    except Exception:  # the config check reports a target that cannot be imported
        return False
    return isinstance(found, type) and issubclass(found, FigureCallback)


def prepare_data(cfg: DictConfig) -> L.LightningDataModule:
    """The data module, its files found (downloaded, cached) and its splits checked."""
    datamodule = build(cfg.data, "data")
    datamodule.prepare_data()  # finds, downloads or caches the files; a short error when it cannot
    check_splits(datamodule, cfg.data)
    return datamodule


def build_trainer(cfg: DictConfig, for_evaluation: bool = False) -> L.Trainer:
    """The trainer of a run; ``for_evaluation``: one device, the figure callbacks only, no logger
    and no checkpoints (``eval.py`` writes only into its own folder)."""
    if for_evaluation:
        figures = {
            key: entry for key, entry in (cfg.get("callbacks") or {}).items()
            if entry and _is_figure(entry.get("_target_"))
        }  # fmt: skip
        return build(cfg.trainer, "trainer", callbacks=_instantiate_all(figures, "callbacks"),
                     logger=False, devices=1, num_nodes=1, strategy="auto",
                     enable_checkpointing=False)  # fmt: skip
    trainer = build(
        cfg.trainer,
        "trainer",
        callbacks=_callbacks(cfg),
        logger=_loggers(cfg) or False,
        plugins=_plugins(cfg),
        enable_progress_bar=progress_bar(cfg),
        # a profiler the config asks for is built from it; none: a cheaper pass-through
        **({} if cfg.trainer.get("profiler") else {"profiler": NoProfiler()}),
    )
    if cfg.get("lean_step", True):
        install_lean_step(trainer)
    return trainer


def install_lean_step(trainer: L.Trainer) -> bool:
    """The lean training loop (:mod:`ae_lab.lean`) in ``trainer``, where this Lightning has the
    internals it replaces; else Lightning's own loop, with a note in the log."""
    try:
        from ae_lab import lean
    except ImportError as error:  # a Lightning whose loop internals moved
        log.info("lean_step: Lightning's own training loop runs (%s)", error)
        return False
    return lean.install(trainer)


def no_nvml_probe() -> None:
    """Without a GPU, turn off the NVML-based CUDA check that Lightning's import turns on: with a
    CUDA build of torch and no driver, every optimizer step then probes NVML and fails (~0.13 ms a
    step)."""
    if not torch.cuda.is_available():
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "0"


def setup(cfg: DictConfig) -> tuple[L.LightningDataModule, L.LightningModule, L.Trainer]:
    """Check every setting, then build the data, the model and the trainer. Nothing is trained
    yet: any bad setting has been refused here with a :class:`~ae_lab.errors.UserError`."""
    parallel.share_cores()  # a job of a joblib sweep: its share of the cores, not all of them
    check_config(cfg)  # types, ranges, run length: before anything is loaded
    # before the first parallel operation, so that torch's threads start with the setting
    denormals.flush_denormals(cfg.get("flush_denormal", False))
    saved = read_checkpoint(cfg.ckpt_path) if cfg.get("ckpt_path") else None
    if rank_zero_only.rank == 0:  # train.py has claimed the directory; this guards run(cfg) calls
        refuse_to_overwrite(cfg.paths.output_dir)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.get("matmul_precision"):
        torch.set_float32_matmul_precision(cfg.matmul_precision)
    no_nvml_probe()

    datamodule = prepare_data(cfg)
    model = build_model(cfg.model, datamodule.image_shape)
    if saved is not None:
        check_checkpoint(saved, model)  # a checkpoint of this model and image size
    return datamodule, model, build_trainer(cfg)


def _tensorboard(trainer: L.Trainer) -> Any:
    """The SummaryWriter of the run's TensorBoard logger, on global rank 0; None otherwise."""
    if not trainer.is_global_zero:
        return None
    board = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
    return board.experiment if board is not None else None


@stopping.interruptible
def run(cfg: DictConfig) -> dict[str, float | None]:
    """Train ``cfg.model`` on ``cfg.data`` and return the final val/test metrics."""
    quiet_libraries()
    output_dir = Path(cfg.paths.output_dir)
    datamodule, model, trainer = setup(cfg)
    overrides, choices, _ = hydra_job()
    if (board := _tensorboard(trainer)) is not None:
        tb_logging.write_text(board, cfg, overrides)

    fit(trainer, model, datamodule, cfg)
    best = trainer.checkpoint_callback
    weights = "best" if isinstance(best, ModelCheckpoint) and best.best_model_path else None
    metrics = evaluate_weights(
        trainer, model, datamodule, seed=cfg.get("seed") or 0, ckpt_path=weights,
        stopped=functools.partial(stopping.stopped_after_fit, trainer, cfg),
    )  # fmt: skip
    if trainer.is_global_zero:
        write_metrics(output_dir, metrics)
        sweep_report.write_reconstructions(model, datamodule, output_dir)  # the evaluated weights
        if board is not None:
            params = tb_logging.hparams(cfg, overrides, choices)
            tags = tb_logging.final_metric_tags(metrics)
            tb_logging.write_hparams(board, params, tags, step=trainer.global_step)
            board.flush()
    return metrics


def fit(trainer: L.Trainer, model: L.LightningModule, datamodule: Any, cfg: DictConfig) -> None:
    """``trainer.fit``; a signal ends it with RunInterrupted, saying what was saved and how to
    resume; a full disk with RunFailed, naming the whole checkpoints kept."""
    try:
        with stopping.signals_end_the_run(
            during=lambda signum: stopping.stopped_in_fit(trainer, cfg, signum),
            after=lambda signum: stopping.stopped_after_fit(trainer, cfg, signum),
        ):
            trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    except OSError as error:
        if error.errno not in stopping.DISK_FULL:
            raise
        raise RunFailed(stopping.disk_full(trainer, cfg, error)) from None
