"""The numbers and figures of a set of weights, shared by the end of a training run and by
``eval.py`` (a finished or stopped run's checkpoint): the same code, so the same weights give the
same ``metrics.json``.

* :func:`evaluate_weights` validates and tests under a fixed seed, with the loggers detached: what
  comes after training goes to ``metrics.json`` and TensorBoard's HParams, never onto the ``val/…``
  curves.
* :func:`pca_metrics` gives each model a reference: PCA's test error with as many components as
  latent units (``test/pca_recon``), and for a linear model with a bottleneck the largest principal
  angle between its decoder's span and the principal subspace (``test/subspace_angle``).
* :func:`latent_metrics` adds the latent-space measures the run's ``measures:`` settings ask for
  (probes on the codes, anomaly AUROCs: :mod:`ae_lab.latent.measures`).
* :func:`draw_figures` draws every figure callback that applies to the model.
* ``eval.py``'s task (:mod:`ae_lab.run.eval_checkpoint`) uses both on a checkpoint.
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
from hydra.utils import instantiate
from lightning.pytorch.utilities.seed import isolate_rng

from ae_lab import atomic
from ae_lab.errors import RunFailed
from ae_lab.figures.base import FigureCallback, save_figures
from ae_lab.figures.projector import write_projectors
from ae_lab.figures.subspace import has_bottleneck, split_images, subspace_angle, training_pca
from ae_lab.latent.measures import Measures
from ae_lab.layout import METRICS_FILE
from ae_lab.models.pca import pca_reconstruction_error
from ae_lab.run.stopping import signals_end_the_run

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


def pca_metrics(model: L.LightningModule, datamodule: Any) -> Metrics:
    """PCA beside the model (docs/models.md), merged into ``metrics.json``:

    * ``test/pca_recon``: the test error (the units of ``test/recon``) of PCA with
      ``model.latent_dim`` components fit on the training images: centered PCA for a model with
      biases, the uncentered second moment's subspace for a linear model (no biases); 0.0 for a
      Gaussian likelihood when there are as many components as pixels;
    * ``test/subspace_angle`` (a linear model with a bottleneck): the largest principal angle, in
      degrees, between its decoder's column space and that uncentered principal subspace.

    Computed on the CPU over every training and test image (a seeded sample for large images:
    :func:`~ae_lab.figures.subspace.split_images`)."""
    linear = bool(model.supports.linear_map)
    mean, components = training_pca(datamodule, model.latent_dim, centered=not linear)
    test = split_images(datamodule, "test")
    error = pca_reconstruction_error(test, mean, components, model.likelihood).mean()
    metrics: Metrics = {"test/pca_recon": float(error)}
    if has_bottleneck(model):
        metrics["test/subspace_angle"] = subspace_angle(model, components)
    return _numbers(metrics)


def latent_metrics(settings: Any, model: L.LightningModule, datamodule: Any, seed: int) -> Metrics:
    """The latent-space measures of ``model`` (docs/eval.md) that the run's ``measures`` settings
    (a config of :class:`~ae_lab.latent.measures.Measures`) ask for; their defaults for a run
    saved without them."""
    measures = instantiate(settings) if settings else Measures()
    return _numbers(measures(model, datamodule, seed=seed))


def _numbers(metrics: Mapping[str, Any]) -> Metrics:
    out: Metrics = {}
    for key, value in metrics.items():
        number = float(value.item() if isinstance(value, torch.Tensor) else value)
        out[key] = number if math.isfinite(number) else None  # JSON has no NaN or inf
    return out


def write_metrics(output_dir: Path, metrics: Metrics) -> None:
    """``metrics.json`` (written atomically: whole or absent), and the test metrics in the log."""
    atomic.write_text(
        output_dir / METRICS_FILE, json.dumps(metrics, indent=2, sort_keys=True) + "\n"
    )
    shown = ", ".join(
        f"{key} {value:.4g}" for key, value in sorted(metrics.items())
        if key.startswith("test/") and value is not None
    )  # fmt: skip
    log.info("run directory: %s (%s)", output_dir, shown)


def draw_figures(
    callbacks: list[L.Callback],
    model: L.LightningModule,
    datamodule: Any,
    folder: Path,
    tensorboard: Path | None = None,
) -> list[Path]:
    """Every figure of ``callbacks`` that applies to ``model``, as files in ``folder/<name>/``;
    the Projector's embedding into the TensorBoard folder ``tensorboard`` when one is given."""
    written = []
    for callback in callbacks:
        if isinstance(callback, FigureCallback) and callback.applies_to(model):
            rendered = callback.draw(model, datamodule)
            written += save_figures(rendered, folder / callback.name, callback.frame_ms)
    if tensorboard is not None:
        write_projectors(callbacks, model, datamodule, tensorboard)
    return written
