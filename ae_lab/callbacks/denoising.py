"""Rows of original | corrupted | reconstructed for a denoising autoencoder."""

from __future__ import annotations

import torch

from ae_lab import viz
from ae_lab.callbacks.base import FigureCallback, Rendered


class DenoisingPanel(FigureCallback):
    name = "denoising_panel"

    def applies_to(self, pl_module) -> bool:
        return getattr(pl_module, "corruption", None) is not None

    def render(self, trainer, pl_module) -> Rendered:
        images, _ = self.examples(trainer, pl_module)
        # The same corruption every epoch: seed the noise on the CPU, then move it.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            corrupted = pl_module.corruption(images.cpu()).to(images.device)
        panel = viz.columns_panel(
            [images, corrupted, pl_module(corrupted)],
            ["original", f"corrupted\n{pl_module.corruption!r}", "reconstructed"],
        )
        return {"denoising": panel}
