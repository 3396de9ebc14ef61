"""Images decoded from codes drawn from the prior: what a VAE generates."""

from __future__ import annotations

import math

import torch

from ae_lab import viz
from ae_lab.callbacks.base import FigureCallback, Rendered


class PriorSamples(FigureCallback):
    name = "samples"

    def applies_to(self, pl_module) -> bool:
        return callable(getattr(pl_module, "sample", None))

    def render(self, trainer, pl_module) -> Rendered:
        generator = torch.Generator().manual_seed(self.seed)
        samples = pl_module.sample(self.num_examples, generator=generator)
        return {"samples": viz.image_grid(samples, nrow=math.ceil(math.sqrt(self.num_examples)))}
