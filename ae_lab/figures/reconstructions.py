"""Validation images above their reconstructions."""

from __future__ import annotations

import torch

from ae_lab.figures import drawing
from ae_lab.figures.base import FigureCallback, Rendered


class Reconstructions(FigureCallback):
    name = "reconstructions"

    def render(self, model, data) -> Rendered:
        images, _ = self.examples(model, data)
        both = torch.cat([images, model.reconstruct(images)])
        return {"reconstructions": drawing.image_grid(both, nrow=len(images))}
