"""The two figures of a sweep's ``report.md`` drawn from what the jobs left, with NumPy and
matplotlib only (the sweep's process does not import torch):

* :func:`code_maps`: each job's 2-D map of its test codes (``RUN/report/codes.npz``, written by
  :func:`ae_lab.figures.report.write_code_map`) coloured by class, one panel per job on one page;
* :func:`probe_against_recon`: probe accuracy against reconstruction error, one point per job,
  and the published point beside it where there is one (ae_bakeoff's).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Panels on the code-map page (the first jobs'), and panels a row.
MAX_PANELS, COLUMNS = 24, 4
PANEL_INCHES, DPI = 3.2, 100


@dataclass(frozen=True)
class CodeMap:
    """A job's map: ``coords`` ``(N, 2)``, ``labels`` ``(N,)`` (negative: unlabelled), ``method``
    (``PCA``, ``UMAP`` or ``latent``) and the dataset's ``class_names``."""

    coords: np.ndarray
    labels: np.ndarray
    method: str
    class_names: tuple[str, ...]


def read_code_map(path: str) -> CodeMap | None:
    """The map in a job's ``codes.npz``, or None when it is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return CodeMap(
                coords=np.asarray(data["coords"], dtype=np.float32),
                labels=np.asarray(data["labels"], dtype=np.int64),
                method=str(data["method"]),
                class_names=tuple(str(n) for n in data["class_names"]),
            )
    except (OSError, ValueError, KeyError):
        return None


def _array(fig: Figure) -> np.ndarray:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def code_maps(titles: Sequence[str], maps: Sequence[CodeMap | None]) -> np.ndarray:
    """One ``H x W x 3`` uint8 page: a panel per job (at most :data:`MAX_PANELS`), its codes as
    points coloured by class (one legend for the page), titled with ``titles`` and the map's
    method; a job without a map gets a panel saying so."""
    if len(titles) != len(maps):
        raise ValueError(f"{len(titles)} titles but {len(maps)} maps")
    count = max(1, min(len(maps), MAX_PANELS))
    columns = min(COLUMNS, count)
    rows = math.ceil(count / columns)
    names = next((m.class_names for m in maps if m is not None and m.class_names), ())
    fig = Figure(figsize=(PANEL_INCHES * columns, PANEL_INCHES * rows + 0.6), dpi=DPI)
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    colours = "tab10" if len(names) <= 10 else "tab20"
    for ax, title, found in zip(axes, titles[:count], maps[:count], strict=False):
        ax.set_xticks([]), ax.set_yticks([])
        if found is None or len(found.coords) == 0:
            ax.text(0.5, 0.5, "no codes:\nthe job left none", ha="center", va="center",
                    color="0.4", transform=ax.transAxes)  # fmt: skip
            ax.set_title(title, fontsize=9)
            continue
        labelled = found.labels >= 0
        if labelled.any():
            ax.scatter(*found.coords[labelled].T, c=found.labels[labelled], cmap=colours, s=2,
                       alpha=0.6, vmin=-0.5, vmax=colormaps[colours].N - 0.5, linewidths=0)  # fmt: skip
        if (~labelled).any():
            ax.scatter(*found.coords[~labelled].T, s=2, alpha=0.5, color="tab:blue", linewidths=0)
        ax.set_title(f"{title}\n({found.method})", fontsize=9)
    for ax in axes[count:]:
        ax.set_axis_off()
    if names:
        palette = colormaps[colours]  # (a legend of coloured dots: one entry per class)
        handles = [
            ax.scatter([], [], color=palette(i % palette.N), s=20, label=name)
            for i, name in enumerate(names)
        ]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(names), 10), fontsize=8,
                   frameon=False)  # fmt: skip
    fig.tight_layout(rect=(0, 0.6 / (PANEL_INCHES * rows + 0.6) if names else 0, 1, 1))
    return _array(fig)


@dataclass(frozen=True)
class Point:
    """A job on the probe plot: its ``label``, reconstruction error ``x`` and accuracy ``y``; the
    published point (``published_x``, ``published_y``) when there is one."""

    label: str
    x: float
    y: float
    published_x: float | None = None
    published_y: float | None = None


def probe_against_recon(
    points: Sequence[Point], x_name: str, y_name: str, published_name: str = ""
) -> np.ndarray:
    """An ``H x W x 3`` uint8 scatter of ``points``: accuracy (``y_name``) against reconstruction
    error (``x_name``), each point labelled; a published point hollow, joined to the job's by a
    thin line (``published_name`` in the legend)."""
    fig = Figure(figsize=(7.5, 5.5), dpi=DPI)
    ax = fig.subplots()
    palette = colormaps["tab10"]
    any_published = False
    for n, point in enumerate(points):
        colour = palette(n % 10)
        ax.scatter([point.x], [point.y], color=colour, s=40, zorder=3)
        ax.annotate(point.label, (point.x, point.y), textcoords="offset points", xytext=(5, 4),
                    fontsize=8)  # fmt: skip
        if point.published_x is not None and point.published_y is not None:
            any_published = True
            ax.scatter([point.published_x], [point.published_y], s=40, zorder=3,
                       facecolors="none", edgecolors=[colour])  # fmt: skip
            ax.plot([point.x, point.published_x], [point.y, point.published_y], color=colour,
                    linewidth=0.8, alpha=0.6)  # fmt: skip
    if any_published:
        ax.scatter([], [], color="0.3", s=40, label="this sweep")
        ax.scatter([], [], facecolors="none", edgecolors="0.3", s=40, label=published_name)
        ax.legend(fontsize=8, loc="best")
    ax.set_xlabel(f"{x_name} (lower is better)")
    ax.set_ylabel(f"{y_name} (higher is better)")
    ax.set_title(f"{y_name} against {x_name}, one point per job", fontsize=10)
    ax.grid(alpha=0.3)
    ax.margins(0.12)
    fig.tight_layout()
    return _array(fig)
