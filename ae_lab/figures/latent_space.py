"""Where the validation images land in latent space, and what the decoder makes of a 2-D plane."""

from __future__ import annotations

import numpy as np
import torch

from ae_lab.figures import drawing
from ae_lab.figures.base import FigureCallback, Rendered, decode_all, encode_all


class LatentSpace(FigureCallback):
    """Args:
    num_points: validation images in the scatter plot.
    manifold_size: the decoded manifold is a ``manifold_size x manifold_size`` mosaic.

    Writes ``scatter`` (codes coloured by class; a latent of more than two dimensions is shown on
    its first two principal components) and, for a 2-D latent, ``manifold``: images decoded over a
    grid of codes spanning the central 90% of the prior (a VAE) or the 1st–99th percentiles of
    the validation codes (an AE).
    """

    name = "latent_space"

    def __init__(self, num_points: int = 2000, manifold_size: int = 15, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_points = int(num_points)
        self.manifold_size = int(manifold_size)

    def render(self, model, data) -> Rendered:
        images, labels = self.examples(model, data, n=self.num_points)
        codes = encode_all(model, images).float().cpu()
        projected, title, axis_names = drawing.principal_axes(codes.numpy())
        class_names = data.class_names
        scatter = drawing.latent_scatter(projected, labels.numpy(), class_names, title, axis_names)
        rendered: Rendered = {"scatter": scatter}
        if codes.shape[1] == 2:
            if model.supports.prior:
                edge = float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(0.95)))
                low, high = [-edge, -edge], [edge, edge]
            else:
                low, high = np.percentile(codes.numpy(), [1, 99], axis=0).tolist()
            grid = drawing.manifold_codes(self.manifold_size, low, high).to(model.device)
            rendered["manifold"] = drawing.image_grid(
                decode_all(model, grid), nrow=self.manifold_size
            )
        return rendered
