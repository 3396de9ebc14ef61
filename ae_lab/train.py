"""``run(cfg)``: build everything from the composed config, fit, evaluate, write ``metrics.json``."""

from __future__ import annotations

import json
import logging
import math
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from ae_lab.checks import build, check_checkpoint, check_config, check_splits, read_checkpoint
from ae_lab.run_dir import refuse_to_overwrite

log = logging.getLogger(__name__)


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


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        number = float(value.item() if isinstance(value, torch.Tensor) else value)
        out[key] = number if math.isfinite(number) else None  # JSON has no NaN or inf
    return out


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


def setup(cfg: DictConfig) -> tuple[L.LightningDataModule, L.LightningModule, L.Trainer]:
    """Check every setting, then build the data, the model and the trainer. Nothing is trained
    yet: any bad setting has been refused here with a :class:`~ae_lab.errors.UserError`."""
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
        callbacks=_instantiate_all(cfg.get("callbacks"), "callbacks"),
        logger=_instantiate_all(cfg.get("logger"), "logger") or False,
    )
    return datamodule, model, trainer


def run(cfg: DictConfig) -> dict[str, float]:
    """Train ``cfg.model`` on ``cfg.data`` and return the final val/test metrics."""
    _quiet_libraries()
    output_dir = Path(cfg.paths.output_dir)
    datamodule, model, trainer = setup(cfg)
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

    # Validate and test the same weights: the best checkpoint when there is one.
    best = trainer.checkpoint_callback
    weights = "best" if isinstance(best, ModelCheckpoint) and best.best_model_path else None
    metrics: dict[str, Any] = {}
    for results in (
        trainer.validate(model, datamodule=datamodule, ckpt_path=weights, verbose=False),
        trainer.test(model, datamodule=datamodule, ckpt_path=weights, verbose=False),
    ):
        for result in results:
            metrics.update(result)
    metrics = _numbers(metrics)
    if trainer.is_global_zero:
        (output_dir / "metrics.json").write_text(
            json.dumps(metrics, indent=2, sort_keys=True) + "\n"
        )
        shown = ", ".join(
            f"{key} {value:.4g}" for key, value in sorted(metrics.items())
            if key.startswith("test/") and value is not None
        )  # fmt: skip
        log.info("run directory: %s (%s)", output_dir, shown)
    return metrics
