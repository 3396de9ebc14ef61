"""Traversals per latent unit: what the decoder makes of one unit moving while the others stay put.

Rows are units, the most informative first: with a prior (a VAE), by the KL from the unit's
posterior to the prior, averaged over validation images (a unit at zero KL has collapsed onto the
prior); without, by the variance of the unit over the validation codes. Each row sweeps its unit
over ``steps`` evenly spaced values, every other unit held at the base code:

* with a prior, from the prior's 5% to its 95% quantile (N(0, 1): -1.64 to +1.64), the same values
  in every row;
* without, from the unit's own 5th to its 95th percentile over the validation codes: an
  autoencoder's units share no scale.

The base code is the code of one fixed validation image (the first of the seeded sample), not the
mean code: a real image's code lies where the decoder was trained, whereas the mean code of an
autoencoder can fall between the clusters of its classes, and a VAE's sits at the prior's centre,
both decoding to a blur; and the same image every epoch keeps the epochs comparable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure

from ae_lab.figures import drawing
from ae_lab.figures.base import FigureCallback, Rendered, checked, chunk_size, decode_all
from ae_lab.latent.codes import encode_images, sample_images

#: the sweep's ends: these quantiles of the prior (a VAE) or of the unit's validation codes (an AE)
LEVELS = (0.05, 0.95)
#: pixels between tiles in the mosaics (torchvision's ``make_grid`` padding)
PADDING = 2


@dataclass(frozen=True)
class Traversal:
    """``units`` ``(rows,)`` shown, best first; ``scores`` their KL (nats) or variance;
    ``values`` ``(rows, steps)`` each row's unit is set to; ``base`` ``(latent,)`` the code the
    other units keep; ``prior``: scores are KLs and values the prior's; ``points``: codes ranked."""

    units: torch.Tensor
    scores: torch.Tensor
    values: torch.Tensor
    base: torch.Tensor
    prior: bool
    points: int

    def codes(self) -> torch.Tensor:
        """``(rows, steps, latent)``: the base code with row ``r``'s unit swept over its values."""
        rows, steps = self.values.shape
        codes = self.base.repeat(rows, steps, 1)
        for row, unit in enumerate(self.units.tolist()):
            codes[row, :, unit] = self.values[row]
        return codes

    def row_labels(self) -> list[str]:
        """Each row's unit index and its KL or variance (an AE's: also the range it sweeps)."""
        labels = []
        for row, (unit, score) in enumerate(
            zip(self.units.tolist(), self.scores.tolist(), strict=True)
        ):
            if self.prior:
                labels.append(f"z[{unit}]\nKL {score:.3g}")
            else:
                low, high = self.values[row, [0, -1]].tolist()
                labels.append(f"z[{unit}]\nvar {score:.3g}\n{low:+.2g}…{high:+.2g}")
        return labels


def rank_units(scores: torch.Tensor, n: int) -> torch.Tensor:
    """The indices of the ``n`` highest ``scores``, highest first (ties: the lower index first)."""
    return torch.sort(scores, descending=True, stable=True).indices[:n]


def sweep_values(codes: torch.Tensor, units: torch.Tensor, steps: int, prior: bool) -> torch.Tensor:
    """``(rows, steps)`` evenly spaced values from the :data:`LEVELS` quantiles of the prior
    ``N(0, 1)`` (``prior``) or of each unit's ``codes`` ``(N, latent)``."""
    levels = torch.tensor(LEVELS, dtype=torch.float64)
    if prior:
        ends = torch.distributions.Normal(0.0, 1.0).icdf(levels).expand(len(units), 2)
    else:
        ends = torch.quantile(codes[:, units].double(), levels, dim=0).T
    t = torch.linspace(0, 1, steps, dtype=torch.float64)
    return (ends[:, :1] + t * (ends[:, 1:] - ends[:, :1])).float()


def traversal_figure(
    paths: torch.Tensor, row_labels: list[str], column_labels: list[str], title: str, xlabel: str
) -> np.ndarray:
    """Decoded traversals ``(rows, steps, C, H, W)`` as a mosaic, a row per unit, each row labelled
    on the left and each column beneath (an empty label: no tick)."""
    rows, steps, _, height, width = paths.shape
    scale = max(1, 56 // height)  # 28-pixel digits shown at 56
    mosaic = drawing.upscale(drawing.image_grid(paths.flatten(0, 1), nrow=steps), scale)
    mosaic_h, mosaic_w = mosaic.shape[:2]
    left, right, top, bottom = 110, 12, 62, 58  # margins in pixels: labels, title, column values
    fig_w, fig_h = max(mosaic_w + left + right, 560), mosaic_h + top + bottom
    fig = Figure(figsize=(fig_w / 100, fig_h / 100), dpi=100)
    ax = fig.add_axes((left / fig_w, bottom / fig_h, mosaic_w / fig_w, mosaic_h / fig_h))
    ax.imshow(mosaic, interpolation="nearest")

    def centres(n: int, size: int) -> list[float]:
        return [scale * (PADDING + i * (size + PADDING) + size / 2) - 0.5 for i in range(n)]

    ax.set_yticks(centres(rows, height), row_labels, fontsize=8)
    ticks = [(x, s) for x, s in zip(centres(steps, width), column_labels, strict=True) if s]
    ax.set_xticks([x for x, _ in ticks], [s for _, s in ticks], fontsize=7)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlabel(xlabel, fontsize=8)
    fig.text(0.5, 1 - 6 / fig_h, title, ha="center", va="top", fontsize=9)
    return drawing.figure_to_array(fig)


class Traversals(FigureCallback):
    """Args:
    num_units: rows: the units shown (fewer when the latent is narrower).
    steps: columns: values each unit takes, evenly spaced (an odd number has the centre).
    num_points: validation images whose codes (and, with a prior, KL) rank the units and give an
        autoencoder's units their ranges.
    frame_ms: GIF frame duration.

    Writes ``traversals_epochNNN.png`` (the labelled grid) and ``sweep_epochNNN.gif``: frame ``t``
    shows column ``t`` of every row, the rows as a mosaic in the PNG's order, row-major.
    """

    name = "traversals"

    def __init__(
        self,
        num_units: int = 8,
        steps: int = 9,
        num_points: int = 2000,
        frame_ms: int = 150,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        given = {
            "num_units": num_units,
            "steps": steps,
            "num_points": num_points,
            "frame_ms": frame_ms,
        }
        for setting, value in given.items():
            least = 2 if setting == "steps" else 1
            if value < least:
                raise ValueError(f"callbacks.{self.name}.{setting} must be >= {least}, got {value}")
        self.num_units = int(num_units)
        self.steps = int(steps)
        self.num_points = int(num_points)
        self.frame_ms = int(frame_ms)

    def plan(self, model, data) -> Traversal:
        """Which units, which values, around which code: from the seeded validation images."""
        images, _ = sample_images(data, "val", self.num_points, self.seed)
        codes = encode_images(model, images)
        prior = bool(model.supports.prior)
        if prior:
            parts = images.split(chunk_size(model))
            kl = sum(
                checked(model.kl_per_unit, part.to(model.device)).double().cpu() * len(part)
                for part in parts
            )
            scores = kl / len(images)
        else:
            scores = codes.double().var(dim=0, unbiased=False)
        units = rank_units(scores, min(self.num_units, codes.shape[1]))
        values = sweep_values(codes, units, self.steps, prior)
        return Traversal(units, scores[units].float(), values, codes[0], prior, len(codes))

    def render(self, model, data) -> Rendered:
        plan = self.plan(model, data)
        codes = plan.codes().to(device=model.device, dtype=model.dtype)
        rows, steps = plan.values.shape
        paths = decode_all(model, codes.flatten(0, 1)).float().cpu().unflatten(0, (rows, steps))
        ranked = f"{rows} of {model.latent_dim} units"
        if plan.prior:
            title = f"the {ranked} of highest KL (nats, mean over {plan.points} validation images)"
            columns = [f"{round(v, 2) + 0.0:+.2f}" for v in plan.values[0].tolist()]  # no -0.00
            swept = f"z_u from the prior's {LEVELS[0]:.0%} to its {LEVELS[1]:.0%} quantile"
        else:
            title = f"the {ranked} of highest variance over {plan.points} validation codes"
            columns = ["" for _ in range(steps)]
            columns[0], columns[-1] = f"{LEVELS[0]:.0%}", f"{LEVELS[1]:.0%}"
            swept = f"z_u from its own {LEVELS[0]:.0%} to {LEVELS[1]:.0%} quantile (range: left)"
        title = f"Traversals: {title}\nthe other units at a fixed validation image's code"
        height = paths.shape[-2]
        return {
            "traversals": traversal_figure(paths, plan.row_labels(), columns, title, swept),
            "sweep": drawing.grid_frames(
                paths, math.ceil(math.sqrt(rows)), scale=max(1, 64 // height)
            ),
        }
