"""Walks in latent space between pairs of validation images, as looping GIFs and a static strip."""

from __future__ import annotations

import math

import torch

from ae_lab.figures import drawing
from ae_lab.figures.base import FigureCallback, Rendered, checked, chunk_size


class LatentInterpolation(FigureCallback):
    """Args:
    grid: a ``grid x grid`` mosaic of cells, each walking between its own two images (smaller
        when the validation set has fewer than ``2 * grid**2`` images).
    steps: points on each straight line from one code to the other (the study used 50).
    strip_columns: how many of the steps the static PNG strip shows.
    frame_ms: GIF frame duration.

    Writes ``grid_epochNNN.gif`` (all cells, forward then back), ``pair_epochNNN.gif`` (the first
    cell, enlarged) and ``strip_epochNNN.png`` (per row: start image, decoded steps, end image).
    """

    name = "latent_interpolation"
    frames_per_run = 5  # GIFs are the largest figures

    def __init__(
        self, grid: int = 4, steps: int = 50, strip_columns: int = 10, frame_ms: int = 60, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.grid = int(grid)
        self.steps = max(2, int(steps))
        self.strip_columns = max(2, min(int(strip_columns), self.steps))
        self.frame_ms = int(frame_ms)

    def render(self, model, data) -> Rendered:
        available = data.split_size("val")
        grid = min(self.grid, math.isqrt(available // 2))  # a small validation set: a smaller grid
        if grid < 1:
            return {}
        pairs = grid * grid
        images, _ = self.examples(model, data, n=2 * pairs)
        start, end = images[:pairs], images[pairs:]
        per_call = max(1, chunk_size(model) // self.steps)  # pairs decoded at once
        paths = torch.cat(
            [
                checked(lambda pair: model.interpolate(*pair, self.steps), (a, b)).cpu()
                for a, b in zip(start.split(per_call), end.split(per_call), strict=True)
            ]
        )
        height = images.shape[-2]
        columns = torch.linspace(0, self.steps - 1, self.strip_columns).round().long()
        strip = torch.cat([start.cpu().unsqueeze(1), paths[:, columns], end.cpu().unsqueeze(1)], 1)
        return {
            "grid": drawing.ping_pong(drawing.grid_frames(paths, grid, scale=max(1, 64 // height))),
            "pair": drawing.ping_pong(
                drawing.grid_frames(paths[:1], 1, scale=max(1, 192 // height))
            ),
            "strip": drawing.image_grid(strip.flatten(0, 1), nrow=strip.shape[1]),
        }
