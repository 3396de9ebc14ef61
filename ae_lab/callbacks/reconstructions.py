"""Validation images above their reconstructions."""

from __future__ import annotations

import torch

from ae_lab import viz
from ae_lab.callbacks.base import FigureCallback, Rendered


class Reconstructions(FigureCallback):
    name = "reconstructions"

    def render(self, trainer, pl_module) -> Rendered:
        images, _ = self.examples(trainer, pl_module)
        both = torch.cat([images, pl_module(images)])
        return {"reconstructions": viz.image_grid(both, nrow=len(images))}
