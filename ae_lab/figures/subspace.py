"""PCA beside a linear autoencoder (Baldi & Hornik, 1989): at the optimum of the squared error, the
decoder of a linear autoencoder with a ``k``-unit bottleneck spans the top-``k`` principal subspace
of the data; without biases, that of the uncentered second moment ``X^T X / N``.

* :func:`training_pca`: PCA of a datamodule's training images, the fit shared by the figure and
  by the evaluation (``test/pca_recon``, ``test/subspace_angle``: :mod:`ae_lab.run.evaluate`);
* :class:`PrincipalDirections`: the decoder's directions beside the principal ones, as images.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure

from ae_lab.figures import drawing
from ae_lab.figures.base import FigureCallback, Rendered
from ae_lab.models.pca import decoder_directions, fit_pca, principal_angles

#: The fit and the test error use every image of a split when it takes at most this many float32
#: values (1 GiB: all of MNIST's 60k x 784), and a seeded sample otherwise.
MAX_FLOATS = 2**28
#: ... of at most this many images (20,000 faces at 64x64 RGB; fewer for larger images).
MAX_SAMPLE = 20_000


def split_images(data, split: str, seed: int = 0) -> torch.Tensor:
    """The flattened float images ``(N, D)`` of ``split`` (on the CPU): all of them if they fit in
    :data:`MAX_FLOATS`, else a seeded sample of ``min(MAX_SAMPLE, MAX_FLOATS // D)``."""
    pixels = math.prod(data.image_shape)
    total = data.split_size(split)
    n = total if total * pixels <= MAX_FLOATS else max(1, min(MAX_SAMPLE, MAX_FLOATS // pixels))
    images, _ = data.sample_batch(n, split=split, seed=seed)
    return images.flatten(1)


_last_fit: list = []  # [(data, k, centered), result]: the figure and the evaluation share a fit


def training_pca(data, k: int, centered: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(mean, components (D, k))`` of the training split's images (:func:`split_images`);
    ``components`` is None when ``k >= D`` (every direction: a perfect reconstruction). The last
    fit is kept: the training images do not change during a run."""
    if k >= math.prod(data.image_shape):
        return torch.zeros(math.prod(data.image_shape)), None
    if _last_fit and _last_fit[0][0] is data and _last_fit[0][1:] == (k, centered):
        return _last_fit[1]
    fit = fit_pca(split_images(data, "train"), k, centered=centered)
    _last_fit[:] = [(data, k, centered), fit]
    return fit


def has_bottleneck(model) -> bool:
    """A linear model narrower than its input, whose decoder's span can be compared with PCA's."""
    return model.supports.linear_map and model.latent_dim < math.prod(model.input_shape)


def subspace_angle(model, components: torch.Tensor) -> float:
    """The largest principal angle, in degrees, between the decoder's column space and
    ``components``' (a linear model's)."""
    return principal_angles(decoder_directions(model).detach().cpu(), components)


def directions_figure(
    panels: list[torch.Tensor], titles: list[str], shape: tuple[int, ...], title: str
) -> np.ndarray:
    """Panels of directions ``(D, n)`` side by side, each column an image normalised to its own
    range (so sign and scale do not matter), ``ceil(sqrt(n))`` tiles a row."""
    fig = Figure(figsize=(3.2 * len(panels), 3.6), dpi=100)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, directions, name in zip(axes, panels, titles, strict=True):
        tiles = directions.T.float().reshape(-1, *shape)
        low = tiles.flatten(1).min(1).values.view(-1, 1, 1, 1)
        high = tiles.flatten(1).max(1).values.view(-1, 1, 1, 1)
        tiles = (tiles - low) / (high - low).clamp_min(1e-12)
        nrow = math.ceil(math.sqrt(len(tiles)))
        ax.imshow(drawing.image_grid(tiles, nrow=nrow), interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.82, wspace=0.05)
    return drawing.figure_to_array(fig)


class PrincipalDirections(FigureCallback):
    """The first ``min(k, 16)`` columns of a linear autoencoder's decoder beside the top principal
    directions of the training images (uncentered: the model has no biases), and those principal
    directions projected onto the decoder's span (the same images once the subspaces coincide),
    titled with the largest principal angle. Drawn for linear models with a bottleneck
    (``linear_ae model.latent_dim=k`` with ``k`` below the pixels)."""

    name = "principal_directions"
    needs = "linear_map"
    shown = 16

    def applies_to(self, model) -> bool:
        return super().applies_to(model) and has_bottleneck(model)

    def render(self, model, data) -> Rendered:
        pca = training_pca(data, model.latent_dim, centered=False)[1].double()
        decoder = decoder_directions(model).detach().double().cpu()
        angle = principal_angles(decoder, pca)
        basis = torch.linalg.qr(decoder)[0]
        projected = basis @ (basis.T @ pca)
        n = min(model.latent_dim, self.shown)
        panels = [decoder[:, :n], pca[:, :n], projected[:, :n]]
        titles = ["decoder columns", "principal directions", "principal, on decoder's span"]
        title = f"k = {model.latent_dim}: largest principal angle {angle:.2f}°"
        figure = directions_figure(panels, titles, tuple(model.input_shape), title)
        return {"principal_directions": figure}
