"""The metrics table of a sweep's ``report.md``: a row per job, each metric column's best in
bold (lowest or highest, by the metric: :func:`direction`) and, for ``experiment=bakeoff``,
ae_bakeoff's published number in a column after each metric it published
(:mod:`ae_lab.sweeps.published`)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from ae_lab.sweeps import published, report, sweep_jobs
from ae_lab.sweeps.report import Row
from ae_lab.sweeps.sweep_jobs import Job

#: Metric names (their last part) for which lower is better, and higher is better; others (the KL,
#: active units) are not ranked.
LOWER = frozenset({"loss", "recon", "recon_clean", "nll", "identity_error", "pca_recon"})
HIGHER = frozenset({"elbo", "psnr", "ssim", "probe_linear", "probe_knn", "anomaly_auroc",
                    "anomaly_auroc_nll"})  # fmt: skip
#: The small linear probes (``measures.probe_labels``), shown after the probe on every label.
SMALL_PROBE = re.compile(r"test/probe_linear_\d+$")


def direction(metric: str) -> str | None:
    """``min`` or ``max``: which way ``metric`` is better; None when neither is."""
    name = metric.rsplit("/", 1)[-1]
    if name in LOWER:
        return "min"
    if name in HIGHER or re.fullmatch(r"probe_linear_\d+", name):
        return "max"
    return None


def number(row: Row, metric: str) -> float | None:
    """``row``'s ``metric`` as a float; None when it has none (or not a number, or NaN)."""
    value = row.get(metric)
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def metric_columns(rows: Sequence[Row], key_metric: str | None) -> list[str]:
    """The table's metrics any job has: ``key_metric`` first, then report.TABLE_METRICS with
    every small linear probe after ``test/probe_linear``."""
    probes = sorted({k for row in rows for k in row if SMALL_PROBE.match(k)})
    at = report.TABLE_METRICS.index("test/probe_linear") + 1
    wanted = [*report.TABLE_METRICS[:at], *probes, *report.TABLE_METRICS[at:]]
    found = [m for m in dict.fromkeys(wanted) if any(m in row for row in rows)]
    if key_metric and any(key_metric in row for row in rows):
        found = [key_metric, *(m for m in found if m != key_metric)]
    return found


def best(rows: Sequence[Row], metric: str) -> float | None:
    """The best value of ``metric`` among the finished rows (None: not ranked, or fewer than two
    values to rank)."""
    way = direction(metric)
    values = [
        v
        for row in rows
        if row.get("status") == report.COMPLETED and (v := number(row, metric)) is not None
    ]
    if way is None or len(values) < 2:
        return None
    return min(values) if way == "min" else max(values)


def metrics_table(jobs: Sequence[Job], key_metric: str | None, bakeoff: bool) -> str:
    """The Markdown table: job, its model or overrides, status, the metrics with each column's best
    in bold, and (bakeoff) ae_bakeoff's number after each metric it published."""
    rows = [job.row for job in jobs]
    dataset = sweep_jobs.dataset(jobs)
    ours = metric_columns(rows, key_metric)
    theirs = {  # ae_bakeoff's numbers, per metric and job: a column only where one applies
        metric: [
            published.published(dataset, job.choices.get(published.GROUP), metric, job.setting)
            for job in jobs
        ]
        for metric in (published.METRICS if bakeoff else ())
    }
    theirs = {m: values for m, values in theirs.items() if any(v is not None for v in values)}
    columns: list[tuple[str, bool]] = []  # (metric, published?)
    for metric in ours:
        columns += [(metric, False)] + ([(metric, True)] if metric in theirs else [])
    columns += [(metric, True) for metric in theirs if metric not in ours]
    labels = sweep_jobs.labels(jobs, bakeoff)
    top = {metric: best(rows, metric) for metric, _ in columns}
    header = ["job", "model" if bakeoff else "overrides", "status"]
    header += [f"{m} (ae_bakeoff)" if is_published else m for m, is_published in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for n, (job, label) in enumerate(zip(jobs, labels, strict=True)):
        cells = [
            str(job.row.get("job", "")),
            label if bakeoff else f"`{label}`",
            sweep_jobs.status(job.row),
        ]
        for metric, is_published in columns:
            if is_published:
                cells.append(report.format_number(theirs[metric][n]))
                continue
            value = number(job.row, metric) if job.finished else None
            text = report.format_number(job.row.get(metric)) if metric in job.row else ""
            cells.append(f"**{text}**" if value is not None and value == top[metric] else text)
        lines.append("| " + " | ".join(report.cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"
