"""How much each latent unit of a VAE carries: the KL from its posterior to the prior, averaged over
validation images. Units near zero are inactive (posterior collapse)."""

from __future__ import annotations

from ae_lab import viz
from ae_lab.callbacks.base import FigureCallback, Rendered, chunk_size


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
        return {"kl_per_unit": viz.kl_per_unit_figure(kl.float().cpu().numpy())}
