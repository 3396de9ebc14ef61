"""Hydra callbacks: claim a run's or a sweep's directory before Hydra writes into it, share the
cores between the jobs of a parallel sweep, and gather a sweep's results, failed jobs included,
into one table and one figure beside its jobs.

Hydra turns an exception raised in a callback into a warning and carries on, so these end the
process themselves (:func:`ae_lab.cli.exit_with`) when they must stop it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import traceback
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from ae_lab import parallel, run_dir, sweep_report
from ae_lab.cli import FAILURE_FILE, Failure, exit_with, write_json_atomic, write_text_atomic
from ae_lab.errors import RunFailed

#: ``status`` of a job in the summary that finished and wrote its metrics
COMPLETED = sweep_report.COMPLETED
#: ``status`` of a job that left neither metrics nor a failure record (killed, or still running)
NO_RESULT = "no result"


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
        metrics_file, failure_file = job / "metrics.json", job / FAILURE_FILE
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
        write_json_atomic(sweep_dir / "summary.json", rows)
        sweep_report.write_table(sweep_dir, rows, key_metric)
        columns = list(dict.fromkeys(key for row in rows for key in row))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(sweep_dir / "summary.csv", text.getvalue())
    return rows


def _set(config: DictConfig, key: str, value: str) -> None:
    node, name = key.rsplit(".", 1)
    parent = OmegaConf.select(config, node)
    with read_write(parent), open_dict(parent):
        parent[name] = value


def _auto_named(config: DictConfig, key: str) -> bool:
    """Whether the directory at ``key`` is Hydra's time stamp (``${now:...}``), not a name the user
    chose; only such names may be changed (``<name>_1``) when they are taken."""
    node, name = key.rsplit(".", 1)
    raw = OmegaConf.to_container(OmegaConf.select(config, node), resolve=False)[name]
    return "${now:" in str(raw)


def _quoted(value: str) -> str:
    """``value`` as a quoted string of Hydra's override grammar."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class _Stopping(Callback):
    """A callback that may have to end the process (Hydra would only warn about an exception)."""

    def _guard(self, step: Any, *args: Any) -> None:
        """Run ``step``; what the user can act on ends the process with its ``error:`` line and
        exit status (:mod:`ae_lab.cli`), a bug with its traceback and exit 1: never does a run
        go on into a directory it did not claim."""
        try:
            step(*args)
        except Exception as exc:
            if Failure.of(exc).is_bug:  # show it, and do not train into an unclaimed directory
                traceback.print_exception(exc)
                raise SystemExit(1) from exc
            exit_with(exc)


class RunDirectoryClaim(_Stopping):
    """Claims the run directory (``hydra.run.dir``) and the sweep directory (``hydra.sweep.dir``)
    before Hydra creates them, as :mod:`ae_lab.run_dir` describes. DDP worker processes
    (``LOCAL_RANK`` set) join the directory their rank-0 process claimed."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if "LOCAL_RANK" in os.environ:
            return
        self._guard(self._claim_run, config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._guard(self._claim_sweep, config)

    @staticmethod
    def _claim_run(config: DictConfig) -> None:
        wanted = config.hydra.run.dir
        claimed = run_dir.claim_run_dir(wanted, auto=_auto_named(config, "hydra.run.dir"))
        _set(config, "hydra.run.dir", str(claimed))

    @staticmethod
    def _claim_sweep(config: DictConfig) -> None:
        wanted = config.hydra.sweep.dir
        claimed = str(run_dir.claim_sweep_dir(wanted, auto=_auto_named(config, "hydra.sweep.dir")))
        _set(config, "hydra.sweep.dir", claimed)
        # Each job composes its config again from these overrides: it must find the same folder.
        overrides = config.hydra.overrides
        with read_write(overrides), open_dict(overrides):
            overrides.hydra.append(f"hydra.sweep.dir={_quoted(claimed)}")


class SharedCores(_Stopping):
    """Before a joblib sweep starts, makes ``hydra.launcher.n_jobs`` the number of jobs that will
    run at once, from which each job takes its share of the cores (:mod:`ae_lab.parallel`)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._guard(parallel.limit_launcher, config)


class SweepSummary(_Stopping):
    """When a ``-m`` sweep ends, writes ``summary.csv``/``.json``/``.md`` and the report figure
    (:mod:`ae_lab.sweep_report`), then ends the process with exit status 1 and one line naming
    the failed jobs when any job failed."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._guard(self._summarise, Path(config.hydra.sweep.dir), config.get("optimized_metric"))

    @staticmethod
    def _summarise(sweep_dir: Path, key_metric: str | None = None) -> None:
        rows = write_summary(sweep_dir, key_metric)
        if rows:
            sweep_report.write_report(sweep_dir, rows, key_metric)
        failed = [row for row in rows if row["status"] != COMPLETED]
        if failed:
            jobs = "; ".join(
                f"job {row['job']} ({row['status']}): {row['error']}" for row in failed
            )
            others = ", the others finished" if len(failed) < len(rows) else ""
            exit_with(
                RunFailed(
                    f"{len(failed)} of {len(rows)} jobs failed{others}: {jobs}. "
                    f"Summary: {sweep_dir / 'summary.csv'}"
                )
            )
