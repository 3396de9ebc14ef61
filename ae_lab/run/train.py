"""``run(cfg)``: build everything from the composed config, fit, evaluate, write ``metrics.json``.

How a run ends (see :mod:`ae_lab.errors` for the exit statuses):

- it finishes: ``metrics.json`` holds the final val/test metrics of the best weights, all finite,
  and TensorBoard's HParams holds them beside the run's settings;
- it diverges: :class:`~ae_lab.errors.RunFailed` (the guard, :mod:`ae_lab.run.callbacks.divergence`);
  no checkpoint of non-finite weights, no figure drawn from them, no ``metrics.json``;
- a signal stops it (:mod:`ae_lab.run.interrupts`): :class:`~ae_lab.errors.RunInterrupted`, whose
  message says what was saved and the command that resumes it (:mod:`ae_lab.run.stopping`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig

from ae_lab.errors import RunFailed
from ae_lab.figures.report import write_job_report
from ae_lab.run import denormals, parallel, stopping
from ae_lab.run import tensorboard as tb
from ae_lab.run.build import (
    build_model,
    build_trainer,
    hydra_job,
    no_nvml_probe,
    prepare_data,
    quiet_libraries,
)
from ae_lab.run.checkpoints import check_checkpoint, check_exclusive, load_weights, read_checkpoint
from ae_lab.run.checks import check_config, check_validation_interval
from ae_lab.run.evaluate import evaluate_weights, latent_metrics, pca_metrics, write_metrics
from ae_lab.run.resume import check_hyperparameters, check_resume
from ae_lab.run.run_dir import refuse_to_overwrite


def setup(cfg: DictConfig) -> tuple[L.LightningDataModule, L.LightningModule, L.Trainer]:
    """Check every setting, then build the data, the model and the trainer. Nothing is trained
    yet: any bad setting has been refused here with a :class:`~ae_lab.errors.UserError`.

    ``ckpt_path`` resumes the run that wrote it (checked to be the same run, with training left);
    ``init_from`` starts a new run from a checkpoint's weights, loaded here into the model
    (:mod:`ae_lab.run.checkpoints`)."""
    parallel.share_cores()  # a job of a joblib sweep: its share of the cores, not all of them
    check_config(cfg)  # types, ranges, run length: before anything is loaded
    # before the first parallel operation, so that torch's threads start with the setting
    denormals.flush_denormals(cfg.get("flush_denormal", False))
    saved = read_checkpoint(cfg.ckpt_path) if cfg.get("ckpt_path") else None
    check_exclusive(cfg, saved)  # ckpt_path resumes this run; init_from starts a new one
    if saved is not None:  # the same run, with training left to do: before anything loads
        check_resume(saved, cfg, hydra_job()[1])
    start = (
        read_checkpoint(cfg.init_from, "init_from") if cfg.get("init_from") and not saved else None
    )
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
        check_hyperparameters(saved, model)  # its optimizer and objective (an older checkpoint)
    if start is not None:
        load_weights(start, model)  # its weights only: a new run (fine-tuning, other data)
    trainer = build_trainer(cfg)
    check_validation_interval(cfg.trainer, datamodule.batches_per_epoch(trainer.world_size))
    return datamodule, model, trainer


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
        tb.write_text(board, cfg, overrides)

    fit(trainer, model, datamodule, cfg)
    best = trainer.checkpoint_callback
    weights = "best" if isinstance(best, ModelCheckpoint) and best.best_model_path else None
    metrics = evaluate_weights(
        trainer, model, datamodule, seed=cfg.get("seed") or 0, ckpt_path=weights,
        stopped=functools.partial(stopping.stopped_after_fit, trainer, cfg),
    )  # fmt: skip
    if trainer.is_global_zero:
        metrics.update(pca_metrics(model, datamodule))  # PCA beside the model: its reference
        metrics.update(latent_metrics(cfg.get("measures"), model, datamodule, cfg.get("seed") or 0))
        write_metrics(output_dir, metrics)
        write_job_report(model, datamodule, output_dir)  # the evaluated weights, for report.md
        if board is not None:
            params = tb.hparams(cfg, overrides, choices)
            tags = tb.final_metric_tags(metrics)
            session = tb.session(cfg, overrides)  # its row's name; a sweep's job: no columns
            tb.write_hparams(board.get_logdir(), params, tags, trainer.global_step, **session)
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
