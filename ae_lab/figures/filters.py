"""What a hidden unit sees: the first-layer weights of a dense encoder, one image tile per unit
(the classic sparse-autoencoder figure)."""

from __future__ import annotations

import math

import torch

from ae_lab.figures import drawing
from ae_lab.figures.base import FigureCallback, Rendered


def normalised_tiles(weights: torch.Tensor) -> torch.Tensor:
    """``(units, C, H, W)`` weights scaled into [0, 1], each tile to its own range (its smallest
    weight black, its largest white, over all its channels); a constant tile is mid-grey."""
    flat = weights.detach().float().flatten(1)
    low, high = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
    span = high - low
    scaled = torch.where(span > 0, (flat - low) / span.clamp_min(1e-12), torch.full_like(flat, 0.5))
    return scaled.view_as(weights)


class Filters(FigureCallback):
    """Each first-layer unit's incoming weights drawn as a tile shaped like the input image.

    Each tile is normalised to its own range (:func:`normalised_tiles`), so a tile shows the
    pattern a unit responds to, not how large its weights are next to the others'. The first
    ``num_units`` units are drawn (the same ones every epoch, so frames compare), in a near-square
    mosaic, row by row. Only models with a dense (MLP) encoder declare ``first_layer_weights``.

    Args:
    num_units: at most this many units (tiles) are drawn.
    """

    name = "filters"
    needs = "dense_encoder"

    def __init__(self, num_units: int = 100, **kwargs) -> None:
        super().__init__(**kwargs)
        if num_units < 1:
            raise ValueError(f"callbacks.{self.name}.num_units must be >= 1, got {num_units}")
        self.num_units = int(num_units)

    def render(self, model, data) -> Rendered:
        weights = model.first_layer_weights()[: self.num_units]
        tiles = normalised_tiles(weights.cpu())
        return {"filters": drawing.image_grid(tiles, nrow=math.ceil(math.sqrt(len(tiles))))}
