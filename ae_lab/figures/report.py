"""A finished run's strip for the sweep report: the same fixed validation images above their
reconstructions by the evaluated weights, in ``RUN/report/reconstructions.png``.
:mod:`ae_lab.sweeps.report` stacks the strips of a sweep's jobs into one figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ae_lab import atomic
from ae_lab.figures import drawing
from ae_lab.figures.base import evaluating
from ae_lab.layout import STRIP

#: Validation images in a strip (``sample_batch(NUM_IMAGES, split="val", seed=0)``).
NUM_IMAGES = 8


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
