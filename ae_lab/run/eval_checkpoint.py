"""``eval.py``'s task: a finished or stopped run's checkpoint evaluated again, with the same code
as the end of training (:mod:`ae_lab.run.evaluate`), into ``RUN/eval/<time>/``: its
``metrics.json`` and ``figures/``. The run's own files are never touched."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig

from ae_lab.errors import UserError
from ae_lab.run.build import build_trainer, prepare_data, quiet_libraries
from ae_lab.run.checks import check_config
from ae_lab.run.eval_config import load_model, run_config
from ae_lab.run.evaluate import (
    Metrics,
    draw_figures,
    evaluate_weights,
    latent_metrics,
    pca_metrics,
    write_metrics,
)

log = logging.getLogger(__name__)


def evaluate_checkpoint(cfg: DictConfig) -> Metrics:
    """``eval.py``'s task; ``cfg`` is composed by :mod:`ae_lab.run.eval_config` (the run's own config
    with the command line's overrides, ``ckpt_path`` and the eval directory)."""
    quiet_libraries()
    output_dir = Path(cfg.paths.output_dir)
    run_cfg, model_overrides = run_config(cfg)
    try:
        check_config(run_cfg)
    except UserError as error:
        raise UserError(f"{error} (in the run's config: override it on the command line)") from None
    model = load_model(cfg.ckpt_path, model_overrides)

    datamodule = prepare_data(run_cfg)
    _check_shape(model, datamodule)
    trainer = build_trainer(run_cfg, for_evaluation=True)
    metrics = evaluate_weights(
        trainer, model, datamodule, seed=run_cfg.get("seed") or 0, ckpt_path=None,
        stopped=lambda signum: "stopped; nothing was written but the figures drawn so far.",
    )  # fmt: skip
    if trainer.is_global_zero:
        board = output_dir / "tensorboard"  # the Projector's embedding
        figures = draw_figures(trainer.callbacks, model, datamodule, output_dir / "figures", board)
        metrics.update(pca_metrics(model, datamodule))  # PCA beside the model: its reference
        seed = run_cfg.get("seed") or 0
        metrics.update(latent_metrics(run_cfg.get("measures"), model, datamodule, seed))
        write_metrics(output_dir, metrics)
        log.info("eval: %d figures in %s", len(figures), output_dir / "figures")
    return metrics


def _check_shape(model: L.LightningModule, datamodule: Any) -> None:
    if tuple(model.input_shape) != tuple(datamodule.image_shape):
        raise UserError(
            f"the checkpoint's model takes images of shape {tuple(model.input_shape)}, but this "
            f"data gives {tuple(datamodule.image_shape)}: evaluate it on data of its size "
            "(data.size=..., or the dataset it was trained on)"
        )
