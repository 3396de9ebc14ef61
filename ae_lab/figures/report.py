"""A finished run's part of the sweep report, drawn from the evaluated weights into ``RUN/report/``:

* ``reconstructions.png``: the same fixed validation images above their reconstructions;
* ``samples.png``: images decoded from codes drawn from a density fitted to the training codes
  (and from the prior, for a model with one): :class:`~ae_lab.figures.samples.Samples`;
* ``interpolation.png``: per row, a validation image, the decoded straight line from its code to
  another's, and that other image;
* ``codes.npz``: the codes of a seeded sample of test images mapped to 2-D (UMAP where the
  ``umap-learn`` package is installed, else their first two principal components; a 2-D code as it
  is) with their labels and class names.

The sweep's own process never imports torch: :mod:`ae_lab.sweeps.report` stacks the strips into
``report.png`` and :mod:`ae_lab.sweeps.report_md` links the rest and draws the code maps from the
``.npz`` files into ``report.md``.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ae_lab import atomic
from ae_lab.figures import drawing
from ae_lab.figures.base import evaluating
from ae_lab.figures.samples import Samples
from ae_lab.latent.codes import split_codes
from ae_lab.layout import CODE_MAP, INTERPOLATION, SAMPLES, STRIP

#: Validation images in a strip (``sample_batch(NUM_IMAGES, split="val", seed=0)``).
NUM_IMAGES = 8
#: Interpolation: pairs of validation images (``seed=1``) and decoded points on each line.
PAIRS, STEPS = 4, 10
#: Samples in each mosaic, and training codes (at most) the density is fitted to.
NUM_SAMPLES, DENSITY_CODES = 16, 5000
#: Wider codes get diagonal covariances: a full mixture in hundreds of dimensions takes minutes.
FULL_COVARIANCE_UP_TO = 64
#: Test images whose codes are mapped to 2-D.
MAP_IMAGES = 2000


def write_reconstructions(model: Any, datamodule: Any, output_dir: str | Path) -> Path:
    """``<output_dir>/report/reconstructions.png`` (written atomically): the fixed validation
    images above their reconstructions by ``model`` as it is now (in eval mode)."""
    images, _ = datamodule.sample_batch(NUM_IMAGES, split="val", seed=0)
    with evaluating(model):
        reconstructions = model.reconstruct(images.to(model.device)).float().cpu()
    strip = drawing.image_grid(torch.cat([images, reconstructions]), nrow=len(images))
    path = Path(output_dir) / STRIP
    atomic.write_bytes(path, drawing.encode_png(strip))
    return path


def write_samples(model: Any, datamodule: Any, output_dir: str | Path) -> Path | None:
    """``report/samples.png`` (:class:`~ae_lab.figures.samples.Samples`: a Gaussian mixture fitted
    to the training codes; the prior too, for a model with one); None when no density could be
    fitted (too few training images)."""
    covariance = "full" if model.latent_dim <= FULL_COVARIANCE_UP_TO else "diag"
    samples = Samples(num_examples=NUM_SAMPLES, num_codes=DENSITY_CODES, covariance=covariance)
    image = samples.draw(model, datamodule).get("samples")
    if image is None:
        return None
    path = Path(output_dir) / SAMPLES
    atomic.write_bytes(path, drawing.encode_png(image))
    return path


def write_interpolation(model: Any, datamodule: Any, output_dir: str | Path) -> Path | None:
    """``report/interpolation.png``: per pair of validation images, the first image, ``STEPS``
    images decoded along the line between their codes (its ends are the reconstructions), the
    second image. None when the validation split holds fewer than two images."""
    images, _ = datamodule.sample_batch(2 * PAIRS, split="val", seed=1)
    pairs = len(images) // 2
    if pairs < 1:
        return None
    start, end = images[:pairs], images[pairs : 2 * pairs]
    with evaluating(model):
        device = model.device
        paths = model.interpolate(start.to(device), end.to(device), STEPS).float().cpu()
    rows = torch.cat([start.unsqueeze(1), paths, end.unsqueeze(1)], dim=1)
    strip = drawing.image_grid(rows.flatten(0, 1), nrow=rows.shape[1])
    strip = drawing.upscale(strip, max(1, round(64 / images.shape[-2])))  # digits legible
    path = Path(output_dir) / INTERPOLATION
    atomic.write_bytes(path, drawing.encode_png(strip))
    return path


def map_2d(codes: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """``(N, 2)`` coordinates of ``codes`` ``(N, latent)`` and how they were made: ``latent`` (a
    code of two units or fewer, as it is), ``UMAP`` (where umap-learn is installed) or ``PCA``."""
    if codes.shape[1] <= 2:
        return np.pad(codes, ((0, 0), (0, 2 - codes.shape[1]))).astype(np.float32), "latent"
    if importlib.util.find_spec("umap") is not None and len(codes) > 15:
        import umap

        reducer = umap.UMAP(n_components=2, random_state=seed)
        return np.asarray(reducer.fit_transform(codes), dtype=np.float32), "UMAP"
    coords, _, _ = drawing.principal_axes(codes)
    return coords.astype(np.float32), "PCA"


def write_code_map(model: Any, datamodule: Any, output_dir: str | Path) -> Path:
    """``report/codes.npz``: ``coords`` ``(N, 2)`` float32, ``labels`` ``(N,)`` int64, ``method``,
    ``latent_dim`` and ``class_names``, for :data:`MAP_IMAGES` test images (seeded)."""
    codes = split_codes(model, datamodule, "test", MAP_IMAGES, seed=0)
    coords, method = map_2d(codes.codes.double().numpy())
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        coords=coords,
        labels=codes.labels.numpy().astype(np.int64),
        method=np.array(method),
        latent_dim=np.array(codes.codes.shape[1]),
        class_names=np.array([str(n) for n in getattr(datamodule, "class_names", ()) or ()]),
    )
    path = Path(output_dir) / CODE_MAP
    atomic.write_bytes(path, buffer.getvalue())
    return path


def write_job_report(model: Any, datamodule: Any, output_dir: str | Path) -> list[Path]:
    """Every file of the run's part of the sweep report (module docstring), by ``model`` as it
    is now (the evaluated weights); the paths written."""
    written = [write_reconstructions(model, datamodule, output_dir)]
    for write in (write_samples, write_interpolation, write_code_map):
        if (path := write(model, datamodule, output_dir)) is not None:
            written.append(path)
    return written
