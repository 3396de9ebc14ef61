"""Images decoded from sampled codes, for every model: codes drawn from a density fitted to the
training images' codes (:mod:`ae_lab.latent.density`), and, for a model with a prior, codes drawn
from the prior beside them. Where the codes of the training images do not fill the prior, the
fitted density's samples are the sharper ones."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from matplotlib.figure import Figure

from ae_lab.figures import drawing
from ae_lab.figures.base import FigureCallback, Rendered, checked, decode_all
from ae_lab.latent.codes import split_codes
from ae_lab.latent.density import COVARIANCES, KINDS, CodeDensity, affordable, fit_density

DPI = 100
PANEL_HEIGHT = 400  # small mosaics (MNIST digits) are enlarged to about this many pixels


def titled_panels(panels: Sequence[np.ndarray], titles: Sequence[str]) -> np.ndarray:
    """Image mosaics side by side, each under its title, one screen pixel per image pixel (small
    mosaics enlarged by a whole factor, nearest-neighbour, so digits stay crisp)."""
    if len(panels) != len(titles):
        raise ValueError("one title per panel")
    scale = max(1, round(PANEL_HEIGHT / max(p.shape[0] for p in panels)))
    panels = [drawing.upscale(panel, scale) for panel in panels]
    gap, band = 16, 12 + 14 * max(title.count("\n") + 1 for title in titles)
    height = max(p.shape[0] for p in panels) + band + gap
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) + 1)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    left = gap
    for panel, title in zip(panels, titles, strict=True):
        h, w = panel.shape[:2]
        ax = fig.add_axes((left / width, gap / height, w / width, h / height))
        ax.imshow(panel, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(title, fontsize=9)
        left += w + gap
    return drawing.figure_to_array(fig)


class Samples(FigureCallback):
    """Args:
    density: ``gmm`` (a Gaussian mixture, as pythae's GMM sampler) or ``gaussian`` (one Gaussian).
    components: Gaussians in the mixture (``gmm`` only); fewer when there are fewer codes.
    covariance: each Gaussian's covariance: ``full``, ``diag``, ``tied`` or ``spherical``.
    num_codes: training images (a seeded sample) whose codes the density is fitted to; fewer in a
        latent so wide that a fit on them would take long (:func:`~ae_lab.latent.density.affordable`).
    max_iter: EM iterations at most, per fit (from a k-means start, a few tens settle it).
    num_examples: samples in each mosaic.

    Writes ``samples``: ``num_examples`` images decoded from codes drawn from the density, fitted
    again at every draw (the codes move while the model trains); for a model with a prior, images
    decoded from prior codes beside them, each mosaic titled with where its codes come from.
    """

    name = "samples"
    needs = None  # every model: a density fitted to its codes stands in for a prior

    def __init__(
        self,
        density: Literal["gmm", "gaussian"] = "gmm",
        components: int = 10,
        covariance: Literal["full", "diag", "tied", "spherical"] = "full",
        num_codes: int = 10_000,
        max_iter: int = 20,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        where = f"callbacks.{self.name}"
        if density not in KINDS:
            raise ValueError(f"{where}.density must be one of {', '.join(KINDS)}, got {density!r}")
        if covariance not in COVARIANCES:
            valid = ", ".join(COVARIANCES)
            raise ValueError(f"{where}.covariance must be one of {valid}, got {covariance!r}")
        for setting, value, low in (("components", components, 1), ("num_codes", num_codes, 2),
                                    ("max_iter", max_iter, 1)):  # fmt: skip
            if value < low:
                raise ValueError(f"{where}.{setting} must be >= {low}, got {value}")
        self.density = str(density)
        self.components = int(components)
        self.covariance = str(covariance)
        self.num_codes = int(num_codes)
        self.max_iter = int(max_iter)

    def fit(self, model, data) -> tuple[CodeDensity, int]:
        """The density fitted to the codes of (a seeded sample of) the training images, and how
        many codes it was fitted to."""
        wanted = 1 if self.density == "gaussian" else self.components
        limit = min(self.num_codes, affordable(model.latent_dim, wanted, self.covariance))
        codes = checked(lambda _: split_codes(model, data, "train", limit, self.seed), None).codes
        fitted = fit_density(
            codes, self.density, min(wanted, len(codes)), self.covariance, self.seed, self.max_iter
        )
        return fitted, len(codes)

    def title(self, density: CodeDensity, codes: int) -> str:
        """Where the fitted panel's codes come from, in two lines."""
        if density.kind == "gaussian":
            what = f"fitted Gaussian ({density.covariance_type} covariance)"
        else:
            k = density.components
            what = f"fitted GMM ({k} component{'s' * (k > 1)}, {density.covariance_type})"
        settled = "" if density.converged else f", EM stopped at {self.max_iter} iterations"
        return f"{what}\non {codes:,} training codes{settled}"

    def render(self, model, data) -> Rendered:
        nrow = math.ceil(math.sqrt(self.num_examples))
        panels, titles = [], []
        if model.supports.prior:
            generator = torch.Generator().manual_seed(self.seed)
            prior = checked(lambda n: model.sample(n, generator=generator), self.num_examples)
            panels.append(drawing.image_grid(prior, nrow=nrow))
            titles.append("prior N(0, I)\n")
        try:
            density, codes = self.fit(model, data)
        except ValueError as error:  # too few training images, a collapsed component
            rank_zero_warn(f"[{self.name}] no density fitted to the codes: {error}")
        else:
            sampled = density.sample(self.num_examples, seed=self.seed)
            decoded = decode_all(model, sampled.to(device=model.device, dtype=model.dtype))
            panels.append(drawing.image_grid(decoded, nrow=nrow))
            titles.append(self.title(density, codes))
        return {"samples": titled_panels(panels, titles)} if panels else {}
