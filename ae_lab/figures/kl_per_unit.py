"""How much each latent unit of a VAE carries: the KL from its posterior to the prior, averaged over
validation images, coloured by Burda's activity criterion (the one ``test/active_units`` counts):
units whose posterior mean does not vary with the image have collapsed onto the prior."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ae_lab.figures import drawing
from ae_lab.figures.base import FigureCallback, Rendered, chunk_size
from ae_lab.models.evaluation import ACTIVITY_THRESHOLD

#: Bar colours: an active unit, a unit collapsed onto the prior.
ACTIVE_COLOR, INACTIVE_COLOR = "tab:blue", "tab:red"


def draw_kl_per_unit(ax: Axes, kl: np.ndarray, active: np.ndarray, threshold: float) -> None:
    """Bars of each unit's mean KL (nats) on ``ax``, in unit order (whole-number ticks), coloured
    by ``active``; the legend names both colours, with how many units each has, even when one
    kind has none."""
    active = np.asarray(active, dtype=bool)
    units = np.arange(len(kl))
    ax.bar(units, kl, width=0.8, color=np.where(active, ACTIVE_COLOR, INACTIVE_COLOR))
    ax.set_xlabel("latent unit")
    ax.set_ylabel("KL(q(z_u|x) || p(z_u)), nats")
    ax.set_title(
        f"KL per latent unit: {kl.sum():.2f} nats in all\n{int(active.sum())} of {len(kl)} units "
        f"active (Var_x E[z_u|x] > {threshold})",
        fontsize=10,
    )
    ax.set_xlim(-0.8, len(kl) - 0.2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    kinds = [
        Patch(color=ACTIVE_COLOR, label=f"active ({int(active.sum())})"),
        Patch(color=INACTIVE_COLOR, label=f"inactive ({int((~active).sum())})"),
    ]
    ax.legend(handles=kinds, loc="best", fontsize=8)


def kl_per_unit_figure(kl: np.ndarray, active: np.ndarray, threshold: float) -> np.ndarray:
    """:func:`draw_kl_per_unit` as an RGB array, wider for a wider latent."""
    fig = Figure(figsize=(min(12.0, max(5.0, 0.12 * len(kl) + 2)), 3.6), dpi=100)
    draw_kl_per_unit(fig.subplots(), kl, active, threshold)
    fig.tight_layout()
    return drawing.figure_to_array(fig)


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
        figure = kl_per_unit_figure(
            kl.float().cpu().numpy(), active.cpu().numpy(), ACTIVITY_THRESHOLD
        )
        return {"kl_per_unit": figure}
