"""Images decoded from codes drawn from the prior: what a VAE generates."""

from __future__ import annotations

import math

import torch

from ae_lab.figures import drawing
from ae_lab.figures.base import FigureCallback, Rendered


class PriorSamples(FigureCallback):
    name = "samples"
    needs = "prior"

    def render(self, model, data) -> Rendered:
        generator = torch.Generator().manual_seed(self.seed)
        samples = model.sample(self.num_examples, generator=generator)
        return {
            "samples": drawing.image_grid(samples, nrow=math.ceil(math.sqrt(self.num_examples)))
        }
