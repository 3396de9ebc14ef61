"""The sweep report: the jobs of a ``-m`` sweep side by side.

Every job's run directory holds ``report/reconstructions.png``: the same fixed validation images
(the ``seed``-chosen ones the figures use) above their reconstructions by the job's evaluated
weights. :func:`report_figure` stacks them, one row per job labelled with its overrides and its key
metric; :func:`markdown_table` writes the summary as a table to paste into a paper draft.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

Row = dict[str, Any]

#: Metrics shown in the Markdown table, in this order, when any job has them.
TABLE_METRICS = (
    "val/loss",
    "test/loss",
    "test/recon",
    "test/nll",
    "test/elbo",
    "test/kl",
    "test/active_units",
    "test/psnr",
    "test/ssim",
    "test/identity_error",
)


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "" if value is None else str(value)
    if math.isnan(value):
        return "nan"
    return f"{value:.4g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[Row], key_metric: str | None = None) -> str:
    """A GitHub-flavoured Markdown table: job, overrides, status, then the metrics any job has."""
    metrics = [m for m in TABLE_METRICS if any(m in row for row in rows)]
    if key_metric and key_metric not in metrics and any(key_metric in row for row in rows):
        metrics.insert(0, key_metric)
    header = ["job", "overrides", "status", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        status = row.get("status", "ok")
        if status != "ok" and row.get("error"):
            status = f"{status}: {row['error']}"
        cells = [str(row.get("job", "")), f"`{row.get('overrides', '')}`", status]
        cells += [_number(row.get(m)) for m in metrics]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def row_label(row: Row, key_metric: str) -> str:
    """``"<job>: <overrides>  (<metric> <value>)"``, or the failure for a failed job."""
    label = f"{row.get('job', '?')}: {row.get('overrides') or '(defaults)'}"
    if row.get("status", "ok") != "ok":
        return f"{label}  (failed: {row.get('error', 'no result')})"
    value = row.get(key_metric)
    return f"{label}  ({key_metric} {_number(value)})" if value is not None else label


def report_figure(
    rows: Sequence[Row], strips: Sequence[np.ndarray | None], key_metric: str
) -> np.ndarray:
    """One ``H x W x 3`` uint8 image: for each job, its label above its reconstruction strip
    (``H x W x 3``: originals on top, reconstructions below; ``None`` for a job with none, whose row
    then says so). Strips of different widths are drawn at their own pixel size."""
    from matplotlib.figure import Figure

    from ae_lab.viz import figure_to_array

    dpi = 100
    shown = [s for s in strips if s is not None]
    width_px = max([s.shape[1] for s in shown], default=400)
    heights = [(s.shape[0] if s is not None else 20) for s in strips]
    label_px = 22
    total_px = sum(heights) + label_px * len(strips) + 10
    fig = Figure(figsize=(max(width_px, 500) / dpi, total_px / dpi), dpi=dpi)
    top = 1.0
    for row, strip, height in zip(rows, strips, heights, strict=True):
        top -= label_px / total_px
        fig.text(0.005, top + 4 / total_px, row_label(row, key_metric), fontsize=9, va="bottom")
        ax = fig.add_axes(
            (0, top - height / total_px, width_px / max(width_px, 500), height / total_px)
        )
        ax.set_axis_off()
        if strip is not None:
            ax.imshow(strip, interpolation="nearest", aspect="auto")
        else:
            ax.text(0.01, 0.5, "no reconstructions (the job did not finish)", fontsize=8)
        top -= height / total_px
    return figure_to_array(fig)
