"""A sweep's results gathered from its job folders, failed jobs included: ``summary.csv``,
``summary.json`` and ``summary.md``, each written whole or not at all."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ae_lab import atomic
from ae_lab.layout import FAILURE_FILE, METRICS_FILE
from ae_lab.sweeps import report

#: ``status`` of a job in the summary that finished and wrote its metrics
COMPLETED = report.COMPLETED
#: ``status`` of a job that left neither metrics nor a failure record (killed, or still running)
NO_RESULT = "no result"
#: ``status`` of a job that could not finish (:class:`ae_lab.errors.Failure`; its process killed)
FAILED = "failed"
#: ``status`` of a job stopped by a signal (Ctrl-C, SIGTERM): it saved what it could
INTERRUPTED = "interrupted"
#: ``status`` of a job a stopped sweep never started (:mod:`ae_lab.sweeps.launcher`)
NOT_RUN = "not run"


def _job_number(job: Path) -> tuple[int, str]:
    return (int(job.name), "") if job.name.isdigit() else (1 << 62, job.name)


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job folder, read from disk (so jobs may have run in other processes): its
    number, overrides, status, error and metrics."""
    rows = []
    for job in sorted((p for p in sweep_dir.iterdir() if p.is_dir()), key=_job_number):
        overrides_file = job / ".hydra" / "overrides.yaml"
        if not overrides_file.exists():
            continue
        overrides = OmegaConf.to_container(OmegaConf.load(overrides_file))
        row: dict[str, Any] = {"job": job.name, "overrides": " ".join(overrides)}
        metrics_file, failure_file = job / METRICS_FILE, job / FAILURE_FILE
        if failure_file.exists():
            failure = json.loads(failure_file.read_text())
            row.update(status=failure["status"], exit_code=failure["exit_code"])
            row["error"] = failure["error"]
        elif metrics_file.exists():
            row.update(status=COMPLETED, exit_code=0, error="")
        else:
            row.update(status=NO_RESULT, exit_code=None, error="no metrics.json or failure.json")
        if metrics_file.exists():
            row.update(json.loads(metrics_file.read_text()))
        rows.append(row)
    return rows


def write_summary(sweep_dir: Path, key_metric: str | None = None) -> list[dict[str, Any]]:
    """``summary.csv``, ``summary.json`` and ``summary.md`` (a Markdown table, ``key_metric``
    first) in ``sweep_dir``, each written whole or not at all: every job's overrides, status, error
    and metrics."""
    rows = collect(sweep_dir)
    if rows:
        atomic.write_text(sweep_dir / "summary.json", json.dumps(rows, indent=2) + "\n")
        report.write_table(sweep_dir, rows, key_metric)
        columns = list(dict.fromkeys(key for row in rows for key in row))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        atomic.write_text(sweep_dir / "summary.csv", text.getvalue())
    return rows
