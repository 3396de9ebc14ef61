"""The sweep report: the jobs of a ``-m`` sweep side by side.

Every finished job writes ``report/reconstructions.png`` into its run directory
(:func:`ae_lab.figures.report.write_reconstructions`): the same fixed validation images (``sample_batch(8, "val",
seed=0)``) above their reconstructions by the job's evaluated weights. After the sweep,
:func:`write_report` stacks them into the sweep's ``report.png``, one row per job labelled with its
overrides and its key metric (:func:`report_figure`), and :func:`markdown_table` gives the summary
as ``summary.md``, a table to paste into a paper draft. Failed jobs have a row in both, with their
error. The page that gathers it all, ``report.md``, is :mod:`ae_lab.sweeps.report_md`'s.

Drawing the report needs only NumPy and Pillow (and matplotlib's bundled font): the sweep's own
process, which under a parallel launcher never ran a job, does not import torch for it.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ae_lab import atomic
from ae_lab.layout import STRIP

Row = dict[str, Any]

#: The sweep's figure and table, in the sweep directory.
REPORT, TABLE = "report.png", "summary.md"
#: The metric a row is labelled with when the sweep has no ``optimized_metric``.
DEFAULT_METRIC = "val/loss"
#: ``status`` of a finished job in the summary rows (:mod:`ae_lab.sweeps.callbacks`).
COMPLETED = "completed"
#: Metrics shown in the Markdown table, in this order, when any job has them.
TABLE_METRICS = (
    "val/loss",
    "test/loss",
    "test/recon",
    "test/recon_clean",
    "test/nll",
    "test/elbo",
    "test/kl",
    "test/active_units",
    "test/psnr",
    "test/ssim",
    "test/identity_error",
    "test/probe_linear",
    "test/probe_linear_550",
    "test/probe_knn",
    "test/anomaly_auroc",
    "test/anomaly_auroc_nll",
)


# ---- text ----------------------------------------------------------------------------------------
def format_number(value: Any) -> str:
    """A metric's value in a table: 4 significant digits; empty for none."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "" if value is None else str(value)
    if math.isnan(value):
        return "nan"
    return f"{value:.4g}"


def cell(text: str) -> str:
    """``text`` safe in a Markdown table cell (no pipe or line break to break the row)."""
    return text.replace("|", "\\|").replace("\n", " ")


def _finished(row: Row) -> bool:
    return row.get("status") == COMPLETED


def outcome(row: Row) -> str:
    """``completed``, or the status and the error of a job that did not finish."""
    status = str(row.get("status") or "no result")
    return f"{status}: {row['error']}" if not _finished(row) and row.get("error") else status


def split_overrides(rows: Sequence[Row]) -> tuple[str, list[str]]:
    """The overrides every job shares, and each job's own (what differs between the jobs): the
    labels show the second, the title or a note the first. A single job's are all its own."""
    tokens = [str(row.get("overrides") or "").split() for row in rows]
    if len(tokens) < 2:
        return "", [" ".join(t) for t in tokens]
    shared = [t for t in tokens[0] if all(t in other for other in tokens[1:])]
    return " ".join(shared), [" ".join(t for t in own if t not in shared) for own in tokens]


def markdown_table(rows: Sequence[Row], key_metric: str | None = None) -> str:
    """A GitHub-flavoured Markdown table: job, its own overrides, status (with the error of a
    failed job), then ``key_metric`` and the :data:`TABLE_METRICS` that any job has; the overrides
    every job shares in a line below it."""
    metrics = [m for m in TABLE_METRICS if any(m in row for row in rows)]
    if key_metric and any(key_metric in row for row in rows):
        metrics = [key_metric, *(m for m in metrics if m != key_metric)]
    shared, own = split_overrides(rows)
    header = ["job", "overrides", "status", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row, overrides in zip(rows, own, strict=True):
        cells = [str(row.get("job", "")), f"`{overrides}`" if overrides else "", outcome(row)]
        cells += [format_number(row.get(m)) for m in metrics]
        lines.append("| " + " | ".join(cell(c) for c in cells) + " |")
    if shared:
        lines += ["", f"Every job: `{shared}`"]
    return "\n".join(lines) + "\n"


def row_label(row: Row, key_metric: str, overrides: str | None = None) -> str:
    """``job <n>: <overrides>  ·  <metric> <value>`` (``overrides``: the row's own unless given);
    for a job that did not finish, its status and error in place of the metric."""
    overrides = row.get("overrides") if overrides is None else overrides
    label = f"job {row.get('job', '?')}: {overrides or '(no overrides)'}"
    if not _finished(row):
        return f"{label}  ·  {outcome(row)}"
    value = row.get(key_metric)
    return f"{label}  ·  {key_metric} {format_number(value) if value is not None else 'n/a'}"


# ---- the figure ----------------------------------------------------------------------------------
#: Narrower strips are enlarged (nearest neighbour, by a whole factor) towards this width.
TARGET_WIDTH = 800
MARGIN, GAP, FONT_PX, LINE_PX, PLACEHOLDER_PX = 12, 14, 15, 20, 36
INK, FAILED_INK, GREY, GREY_INK = (20, 20, 20), (170, 20, 20), (235, 235, 235), (90, 90, 90)


def _font(size: int, bold: bool = False) -> Any:
    """DejaVu Sans, which matplotlib ships, so the report looks the same on every machine."""
    import matplotlib
    from PIL import ImageFont

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size)


def _wrap(text: str, font: Any, width: int) -> list[str]:
    """``text`` broken at spaces into lines no wider than ``width`` pixels (a longer word is
    broken too)."""
    columns = max(10, int(width / max(1.0, font.getlength("x" * 20) / 20)))
    while True:
        lines = textwrap.wrap(text, columns, break_on_hyphens=False) or [""]
        if columns <= 10 or all(font.getlength(line) <= width for line in lines):
            return lines
        columns -= 4


def short_numbers(overrides: str) -> str:
    """``lr=0.0012520653814999472`` as ``lr=0.001252``: a figure needs 4 digits of the values an
    Optuna search draws (summary.csv/.json/.md keep them all)."""
    return re.sub(r"(?<==)-?\d+\.\d{5,}(?:e[-+]?\d+)?\b", lambda m: f"{float(m[0]):.4g}", overrides)


def report_figure(
    rows: Sequence[Row], strips: Sequence[np.ndarray | None], key_metric: str, title: str = ""
) -> np.ndarray:
    """One ``H x W x 3`` uint8 image: ``title`` (bold) and the overrides every job shares, then for
    each job its :func:`row_label` (with the overrides that differ between the jobs) above its
    strip (``H x W x 3``: originals on top, reconstructions below; None for a job without one,
    whose row then says so). Strips keep their pixels: all are enlarged by the same whole factor,
    so that the widest is about :data:`TARGET_WIDTH` pixels wide. The labels of jobs that did not
    finish are red."""
    from PIL import Image, ImageDraw

    if len(rows) != len(strips):
        raise ValueError(f"{len(rows)} rows but {len(strips)} strips")
    widest = max((s.shape[1] for s in strips if s is not None), default=TARGET_WIDTH)
    scale = max(1, TARGET_WIDTH // widest)
    width = max(widest * scale, TARGET_WIDTH) + 2 * MARGIN
    font, bold = _font(FONT_PX), _font(FONT_PX, bold=True)
    text_width = width - 2 * MARGIN
    shared, own = split_overrides(rows)
    heading = _wrap(title, bold, text_width) if title else []
    note = _wrap(f"Every job: {short_numbers(shared)}", font, text_width) if shared else []
    labels = [  # (a metric and its value on one line: joined by a no-break space)
        _wrap(
            row_label(row, key_metric, short_numbers(overrides)).replace(
                f"{key_metric} ", f"{key_metric}\N{NO-BREAK SPACE}"
            ),
            font,
            text_width,
        )
        for row, overrides in zip(rows, own, strict=True)
    ]
    bodies = [PLACEHOLDER_PX if s is None else s.shape[0] * scale for s in strips]
    top_lines = len(heading) + len(note)
    height = MARGIN + (top_lines * LINE_PX + GAP if top_lines else 0)
    height += sum(
        len(lines) * LINE_PX + body + GAP for lines, body in zip(labels, bodies, strict=True)
    )

    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)

    def write(lines: list[str], top: int, ink: tuple[int, int, int], face: Any) -> int:
        for n, line in enumerate(lines):
            draw.text((MARGIN, top + n * LINE_PX), line, fill=ink, font=face)
        return top + len(lines) * LINE_PX

    top = write(note, write(heading, MARGIN, INK, bold), INK, font) + (GAP if top_lines else 0)
    for row, lines, strip, body in zip(rows, labels, strips, bodies, strict=True):
        top = write(lines, top, INK if _finished(row) else FAILED_INK, font)
        if strip is not None:
            enlarged = np.ascontiguousarray(strip.repeat(scale, axis=0).repeat(scale, axis=1))
            canvas.paste(Image.fromarray(enlarged), (MARGIN, top))
        else:
            draw.rectangle((MARGIN, top + 2, width - MARGIN, top + body - 4), fill=GREY)
            why = "the job left none" if _finished(row) else "the job did not finish"
            draw.text((MARGIN + 8, top + 9), f"no reconstructions: {why}", fill=GREY_INK, font=font)
        top += body + GAP
    return np.asarray(canvas)


def read_strip(path: Path) -> np.ndarray | None:
    """A job's strip as ``H x W x 3`` uint8, or None when it is missing or cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def write_report(sweep_dir: str | Path, rows: Sequence[Row], key_metric: str | None) -> Path:
    """``report.png`` in ``sweep_dir`` (written atomically): :func:`report_figure` of the jobs'
    strips, labelled with ``key_metric`` (:data:`DEFAULT_METRIC` when None)."""
    from PIL import Image

    sweep_dir = Path(sweep_dir)
    key_metric = key_metric or DEFAULT_METRIC
    strips = [read_strip(sweep_dir / str(row["job"]) / STRIP) for row in rows]
    title = (
        f"{sweep_dir.name}: {len(rows)} jobs. Fixed validation images (top row of each job) and "
        f"their reconstructions (below); each job labelled with its overrides and {key_metric}."
    )
    figure = report_figure(rows, strips, key_metric, title)
    path = sweep_dir / REPORT
    with atomic.atomic_write(path, "wb") as file:
        Image.fromarray(figure).save(file, format="PNG")
    return path


def write_table(sweep_dir: str | Path, rows: Sequence[Row], key_metric: str | None) -> Path:
    """``summary.md`` in ``sweep_dir`` (written atomically): :func:`markdown_table`."""
    path = Path(sweep_dir) / TABLE
    atomic.write_text(path, markdown_table(rows, key_metric or DEFAULT_METRIC))
    return path
