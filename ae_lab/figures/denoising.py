"""Rows of original | corrupted | reconstructed, for any model trained on corrupted inputs."""

from __future__ import annotations

import torch

from ae_lab.figures import drawing
from ae_lab.figures.base import FigureCallback, Rendered


class DenoisingPanel(FigureCallback):
    name = "denoising_panel"
    needs = "corruption"

    def render(self, model, data) -> Rendered:
        images, _ = self.examples(model, data)
        # The same corruption every epoch: seed the noise on the CPU, then move it.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            corrupted = model.corrupt(images.cpu()).to(images.device)
        panel = drawing.columns_panel(
            [images, corrupted, model.reconstruct(corrupted)],
            ["original", f"corrupted\n{model.corruption!r}", "reconstructed"],
        )
        return {"denoising": panel}
