"""How much each latent unit of a VAE carries: the KL from its posterior to the prior, averaged over
validation images, coloured by Burda's activity criterion (the one ``test/active_units`` counts):
units whose posterior mean does not vary with the image have collapsed onto the prior."""

from __future__ import annotations

import torch

from ae_lab.figures import drawing
from ae_lab.figures.base import FigureCallback, Rendered, chunk_size
from ae_lab.models.evaluation import ACTIVITY_THRESHOLD


class KLPerUnit(FigureCallback):
    """Args:
    num_points: validation images the KL is averaged over.
    """

    name = "kl_per_unit"
    needs = "prior"

    def __init__(self, num_points: int = 2000, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_points = int(num_points)

    def render(self, model, data) -> Rendered:
        images, _ = self.examples(model, data, n=self.num_points)
        parts = images.split(chunk_size(model))
        kl = sum(model.kl_per_unit(part) * len(part) for part in parts) / len(images)
        means = torch.cat([model.encode(part) for part in parts]).double()
        active = means.var(dim=0) > ACTIVITY_THRESHOLD
        figure = drawing.kl_per_unit_figure(kl.float().cpu().numpy(), active.cpu().numpy())
        return {"kl_per_unit": figure}
