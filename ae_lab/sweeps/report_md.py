"""The sweep's ``report.md``: one page, readable on GitHub and in a browser, for any ``-m`` sweep
(a grid, an Optuna search, one with failed jobs), its figures beside it in the sweep folder.

* the metrics table, each column's best in bold (lowest or highest, by the metric: :func:`~ae_lab.sweeps.report_table.direction`)
  and, for ``experiment=bakeoff``, ae_bakeoff's published numbers in a column beside ours
  (:mod:`ae_lab.sweeps.published`);
* the reconstructions side by side (``report.png``, :mod:`ae_lab.sweeps.report`);
* each job's samples and interpolation strip (``<job>/report/*.png``, drawn by the job);
* every job's codes mapped to 2-D, coloured by class, on one page (``codes.png``), and the probe
  accuracy against the reconstruction error, one point per job (``probe_vs_recon.png``):
  :mod:`ae_lab.sweeps.report_plots`.

It reads the jobs' folders only (their metrics, ``.hydra/`` and ``report/``), so it does not import
torch: the sweep's own process writes it after the jobs.
"""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ae_lab import atomic
from ae_lab.layout import CODE_MAP, INTERPOLATION, SAMPLES
from ae_lab.sweeps import published, report, report_plots, report_table, sweep_jobs
from ae_lab.sweeps.report import Row
from ae_lab.sweeps.sweep_jobs import Job

REPORT_MD, CODES_PNG, PROBE_PNG = "report.md", "codes.png", "probe_vs_recon.png"


def _image(path: Path, sweep_dir: Path, alt: str) -> str:
    return f"![{alt}]({path.relative_to(sweep_dir).as_posix()})"


def _jobs_section(jobs: Sequence[Job], labels: Sequence[str], sweep_dir: Path) -> list[str]:
    lines = ["## Samples and interpolations", ""]
    lines.append(
        "Per job: images decoded from codes drawn from a density fitted to its training codes "
        "(and from the prior, for a model with one); then rows of a validation image, the "
        "decoded straight line from its code to another image's code, and that image."
    )
    for job, label in zip(jobs, labels, strict=True):
        lines += ["", f"### job {job.row.get('job')}: {label}", ""]
        if not job.finished:
            lines.append(f"Did not finish ({sweep_jobs.status(job.row)}).")
            continue
        shown = [
            _image(job.path(rel), sweep_dir, f"job {job.row.get('job')} {what}")
            for rel, what in ((SAMPLES, "samples"), (INTERPOLATION, "interpolation"))
            if job.path(rel).is_file()
        ]
        lines += [line for image in shown for line in (image, "")][:-1] or [
            "The job left no figures."
        ]
    return lines


def _codes_section(jobs: Sequence[Job], labels: Sequence[str], sweep_dir: Path) -> list[str]:
    """``codes.png`` (every job's code map on one page) and its lines; none without any map."""
    maps = [report_plots.read_code_map(str(job.path(CODE_MAP))) for job in jobs]
    found = [m for m in maps if m is not None]
    if not found:
        return []
    titles = [  # (two lines of a panel's width at most)
        "\n".join(textwrap.wrap(f"job {j.row.get('job')}: {label}", 36)[:2])
        for j, label in zip(jobs, labels, strict=True)
    ]
    _write_png(sweep_dir / CODES_PNG, report_plots.code_maps(titles, maps))
    methods = ", ".join(sorted({m.method for m in found}))
    shown = min(len(maps), report_plots.MAX_PANELS)
    first = f" (the first {shown} jobs)" if shown < len(maps) else ""
    text = (
        f"Each job's codes of up to {max(len(m.coords) for m in found):,} test images (the same "
        f"seeded sample for every job) mapped to 2-D ({methods}), coloured by class{first}."
    )
    return ["", "## Codes", "", text, "", _image(sweep_dir / CODES_PNG, sweep_dir, "code maps")]


def _probe_plot(jobs: Sequence[Job], labels: Sequence[str], bakeoff: bool, sweep_dir: Path):
    """``probe_vs_recon.png`` and its lines, or a line saying why there is none."""
    rows = [job.row for job in jobs]
    x_name = next((m for m in ("test/recon", "test/loss") if any(m in r for r in rows)), None)
    small = sorted({k for row in rows for k in row if report_table.SMALL_PROBE.match(k)})
    order = ["test/probe_linear_550"] if bakeoff else []
    order += ["test/probe_linear", *small, "test/probe_knn"]
    y_name = next((m for m in order if any(m in r for r in rows)), None)
    points = []
    dataset = sweep_jobs.dataset(jobs)
    for job, label in zip(jobs, labels, strict=True):
        x, y = (
            report_table.number(job.row, x_name or ""),
            report_table.number(job.row, y_name or ""),
        )
        if not job.finished or x is None or y is None:
            continue
        model = job.choices.get(published.GROUP) if bakeoff else None
        px = published.published(dataset, model, x_name, job.setting) if bakeoff else None
        py = published.published(dataset, model, y_name, job.setting) if bakeoff else None
        name = label if bakeoff else f"job {job.row.get('job')}"
        points.append(report_plots.Point(name, x, y, px, py))
    if not points:
        return ["No job has both a probe accuracy and a reconstruction error in its metrics "
                "(the probes need labelled data and `measures.probes=true`)."]  # fmt: skip
    figure = report_plots.probe_against_recon(points, x_name, y_name, "ae_bakeoff (published)")
    _write_png(sweep_dir / PROBE_PNG, figure)
    return [_image(sweep_dir / PROBE_PNG, sweep_dir, f"{y_name} against {x_name}")]


def _write_png(path: Path, image: Any) -> None:
    from PIL import Image

    with atomic.atomic_write(path, "wb") as file:
        Image.fromarray(image).save(file, format="PNG")


def _published_section(dataset: str | None) -> list[str]:
    models = published.models(dataset or "")
    if not models:
        return [f"ae_bakeoff published no numbers for data={dataset}."]
    lines = ["| model | " + " | ".join(published.METRICS) + " |",
             "|---|" + "---|" * len(published.METRICS)]  # fmt: skip
    for model, values in models.items():
        cells = [report.format_number(values.get(m)) for m in published.METRICS]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return [*lines, "", f"Source: {published.source()}"]


def markdown_report(sweep_dir: Path, rows: Sequence[Row], key_metric: str | None) -> str:
    """The text of ``report.md`` for the jobs ``rows`` of ``sweep_dir``; draws ``codes.png`` and
    ``probe_vs_recon.png`` into ``sweep_dir`` on the way."""
    jobs = [sweep_jobs.read_job(sweep_dir, row) for row in rows]
    bakeoff = sweep_jobs.is_bakeoff(jobs)
    labels = sweep_jobs.labels(jobs, bakeoff)
    failed = [str(job.row.get("job")) for job in jobs if not job.finished]
    shared, _ = report.split_overrides(rows)
    task = sweep_dir.parent.parent.name if sweep_dir.parent.name == "multiruns" else ""
    lines = [f"# Sweep report: {task + ' · ' if task else ''}{sweep_dir.name}", ""]
    outcome = f"{len(jobs) - len(failed)} finished"
    which = f"job{'s' * (len(failed) > 1)} {', '.join(failed)}"
    outcome += f", {len(failed)} did not ({which})" if failed else ""
    lines.append(f"{len(jobs)} jobs, {outcome}." + (f" Every job: `{shared}`." if shared else ""))
    best_trial = sweep_dir / "optimization_results.yaml"
    if best_trial.is_file():
        with contextlib.suppress(Exception):
            found = OmegaConf.load(best_trial)
            params = report.short_numbers(
                " ".join(f"{k}={v}" for k, v in found.best_params.items())
            )
            lines += [
                "",
                f"The search's best trial: `{params}`, {key_metric} {found.best_value:.4g}.",
            ]
    lines += ["", "## Metrics", "", report_table.metrics_table(jobs, key_metric, bakeoff).rstrip()]
    lines += ["", "Bold: each column's best among the finished jobs (lowest for losses, "
              "reconstruction errors and NLL; highest for the ELBO, PSNR, SSIM, probe accuracies "
              "and AUROCs; the KL and active units are not ranked)."]  # fmt: skip
    if bakeoff:
        lines += [""]
        lines.append(
            f"*(ae_bakeoff)*: the number ae_bakeoff published for the model on data={sweep_jobs.dataset(jobs)}"
            " (docs/bakeoff.md says what differs); its AUROC only beside a job run as it was "
            "(data.holdout_class=1, model.latent_dim=2)."
        )
    if (sweep_dir / report.REPORT).is_file():
        lines += ["", "## Reconstructions", "",
                  "Fixed validation images (top row of each job) and their reconstructions.", "",
                  _image(sweep_dir / report.REPORT, sweep_dir, "reconstructions by every job")]  # fmt: skip
    lines += ["", *_jobs_section(jobs, labels, sweep_dir)]
    lines += _codes_section(jobs, labels, sweep_dir)
    lines += ["", "## Probe accuracy against reconstruction error", ""]
    lines += _probe_plot(jobs, labels, bakeoff, sweep_dir)
    if bakeoff:
        lines += [
            "",
            "## ae_bakeoff's published numbers",
            "",
            *_published_section(sweep_jobs.dataset(jobs)),
        ]
    return "\n".join(lines) + "\n"


def write_markdown_report(
    sweep_dir: str | Path, rows: Sequence[Row], key_metric: str | None
) -> Path:
    """``report.md`` in ``sweep_dir`` (written atomically) and its figures: :func:`markdown_report`."""
    sweep_dir = Path(sweep_dir)
    path = sweep_dir / REPORT_MD
    atomic.write_text(path, markdown_report(sweep_dir, rows, key_metric or report.DEFAULT_METRIC))
    return path
