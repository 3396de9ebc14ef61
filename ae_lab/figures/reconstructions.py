"""Validation images above their reconstructions, each row named on its left."""

from __future__ import annotations

import torch

from ae_lab.figures import drawing
from ae_lab.figures.base import FigureCallback, Rendered

#: The mosaic's rows, top to bottom.
ROWS = ("input", "reconstruction")


class Reconstructions(FigureCallback):
    name = "reconstructions"

    def render(self, model, data) -> Rendered:
        images, _ = self.examples(model, data)
        both = torch.cat([images, model.reconstruct(images)])
        grid = drawing.image_grid(both, nrow=len(images))
        return {"reconstructions": drawing.label_rows(grid, ROWS)}
