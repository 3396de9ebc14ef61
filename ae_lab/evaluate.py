"""The numbers and figures of a set of weights, shared by the end of a training run and by
``eval.py`` (a finished or stopped run's checkpoint): the same code, so the same weights give the
same ``metrics.json``.

* :func:`evaluate_weights` validates and tests under a fixed seed, with the loggers detached: what
  comes after training goes to ``metrics.json`` and TensorBoard's HParams, never onto the ``val/…``
  curves.
* :func:`draw_figures` draws every figure callback that applies to the model.
* :func:`evaluate_checkpoint` is ``eval.py``'s task: rebuild the run from its own config (with the
  command line's overrides), load the checkpoint, evaluate, draw, write ``RUN/eval/<time>/``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.seed import isolate_rng
from omegaconf import DictConfig

from ae_lab import atomic
from ae_lab.errors import RunFailed, UserError
from ae_lab.stopping import signals_end_the_run

log = logging.getLogger(__name__)

Metrics = dict[str, float | None]


def evaluate_weights(
    trainer: L.Trainer,
    model: L.LightningModule,
    datamodule: Any,
    seed: int,
    ckpt_path: str | None,
    stopped: Callable[[int], str],
) -> Metrics:
    """Validate and test ``model`` (with the weights of ``ckpt_path``: ``"best"``, a file, or
    None for those it holds), seeded with ``seed`` inside an isolated RNG, so the same weights give
    the same metrics whatever ran before. A signal ends it with the message ``stopped(signum)``.

    The trainer's loggers are detached meanwhile: these numbers are the run's result, not points
    of its curves."""
    loggers = trainer.loggers
    trainer.loggers = []
    metrics: dict[str, Any] = {}
    try:
        with isolate_rng():
            torch.manual_seed(seed)
            for stage in (trainer.validate, trainer.test):
                with signals_end_the_run(during=stopped, after=stopped):
                    results = stage(
                        model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False
                    )
                for result in results:
                    metrics.update(result)
    finally:
        trainer.loggers = loggers
    numbers = _numbers(metrics)
    broken = sorted(k for k, v in numbers.items() if v is None and k.endswith("loss"))
    if broken:
        raise RunFailed(
            f"the evaluation of the {'best' if ckpt_path == 'best' else 'given'} weights gave a "
            f"non-finite {', '.join(broken)}; metrics.json was not written."
        )
    return numbers


def _numbers(metrics: Mapping[str, Any]) -> Metrics:
    out: Metrics = {}
    for key, value in metrics.items():
        number = float(value.item() if isinstance(value, torch.Tensor) else value)
        out[key] = number if math.isfinite(number) else None  # JSON has no NaN or inf
    return out


def write_metrics(output_dir: Path, metrics: Metrics) -> None:
    """``metrics.json`` (written atomically: whole or absent), and the test metrics in the log."""
    atomic.write_text(
        output_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n"
    )
    shown = ", ".join(
        f"{key} {value:.4g}" for key, value in sorted(metrics.items())
        if key.startswith("test/") and value is not None
    )  # fmt: skip
    log.info("run directory: %s (%s)", output_dir, shown)


def draw_figures(
    callbacks: list[L.Callback], model: L.LightningModule, datamodule: Any, folder: Path
) -> list[Path]:
    """Every figure of ``callbacks`` that applies to ``model``, as files in ``folder/<name>/``."""
    from ae_lab.callbacks.base import FigureCallback, save_figures

    written = []
    for callback in callbacks:
        if isinstance(callback, FigureCallback) and callback.applies_to(model):
            rendered = callback.draw(model, datamodule)
            written += save_figures(rendered, folder / callback.name, callback.frame_ms)
    return written


def evaluate_checkpoint(cfg: DictConfig) -> Metrics:
    """``eval.py``'s task; ``cfg`` is composed by :mod:`ae_lab.eval_config` (the run's own config
    with the command line's overrides, ``ckpt_path`` and the eval directory)."""
    from ae_lab.checks import check_config
    from ae_lab.eval_config import load_model, run_config
    from ae_lab.train import build_trainer, prepare_data, quiet_libraries

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
        figures = draw_figures(trainer.callbacks, model, datamodule, output_dir / "figures")
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
