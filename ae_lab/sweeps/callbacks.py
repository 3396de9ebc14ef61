"""Hydra callbacks: claim a run's or a sweep's directory before Hydra writes into it, share the
cores between the jobs of a parallel sweep and run each in a process the sweep supervises
(:mod:`ae_lab.sweeps.launcher`), and gather a sweep's results, failed jobs included, into one table
and one figure beside its jobs (:mod:`ae_lab.sweeps.summary`).

Hydra turns an exception raised in a callback into a warning and carries on, so these end the
process themselves (:func:`ae_lab.errors.exit_with`) when they must stop it.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from ae_lab.errors import Failure, RunFailed, exit_with
from ae_lab.run import parallel, run_dir
from ae_lab.sweeps import report, report_md
from ae_lab.sweeps.summary import COMPLETED, write_summary

#: Hydra's joblib launcher (hydra-joblib-launcher), and the lab's in its place
#: (``hydra_plugins/ae_lab_sweepers/joblib_launcher.py``: Hydra takes plugins only from there).
PLUGIN_LAUNCHER = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SUPERVISED_LAUNCHER = "hydra_plugins.ae_lab_sweepers.joblib_launcher.JoblibLauncher"


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
    before Hydra creates them, as :mod:`ae_lab.run.run_dir` describes. DDP worker processes
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
    run at once, from which each job takes its share of the cores (:mod:`ae_lab.run.parallel`)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._guard(parallel.limit_launcher, config)


class SupervisedJobs(_Stopping):
    """Before a ``hydra/launcher=joblib`` sweep starts, puts the lab's joblib launcher in the
    plugin's place: the same settings, each job in a process of its own that the sweep supervises,
    so that a signal stops the jobs cleanly and a killed job does not end the sweep
    (:mod:`ae_lab.sweeps.launcher`). The jobs see it too (``hydra.launcher._target_`` in their
    ``.hydra/hydra.yaml``)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._guard(self._supervise, config)

    @staticmethod
    def _supervise(config: DictConfig) -> None:
        launcher = config.hydra.launcher
        if launcher.get("_target_") != PLUGIN_LAUNCHER:
            return
        with read_write(launcher):
            launcher._target_ = SUPERVISED_LAUNCHER
        overrides = config.hydra.overrides
        with read_write(overrides), open_dict(overrides):
            overrides.hydra.append(f"hydra.launcher._target_={SUPERVISED_LAUNCHER}")


def summarise(sweep_dir: Path, key_metric: str | None = None) -> list[dict[str, Any]]:
    """Write the sweep's ``summary.csv``/``.json``/``.md``, report figure
    (:mod:`ae_lab.sweeps.report`) and ``report.md`` (:mod:`ae_lab.sweeps.report_md`), say where
    they are, and return the summary's rows."""
    rows = write_summary(sweep_dir, key_metric)
    if rows:
        figure = report.write_report(sweep_dir, rows, key_metric)
        page = report_md.write_markdown_report(sweep_dir, rows, key_metric)
        print(
            f"sweep of {len(rows)} jobs: {sweep_dir}\n"
            f"  table:  {sweep_dir / report.TABLE} (also summary.csv, summary.json)\n"
            f"  report: {figure}\n"
            f"  page:   {page} (the table, figures and code maps; read it on GitHub or locally)",
            flush=True,
        )
    return rows


class SweepSummary(_Stopping):
    """When a ``-m`` sweep ends, writes ``summary.csv``/``.json``/``.md`` and the report figure
    (:func:`summarise`), then ends the process with exit status 1 and one line naming the failed
    jobs when any job failed."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._guard(self._summarise, Path(config.hydra.sweep.dir), config.get("optimized_metric"))

    @staticmethod
    def _summarise(sweep_dir: Path, key_metric: str | None = None) -> None:
        from ae_lab.run.tensorboard_hparams import write_sweep_hparams  # torch: once it ends

        write_sweep_hparams(sweep_dir)  # HParams' columns: every job's settings and metrics
        rows = summarise(sweep_dir, key_metric)
        failed = [row for row in rows if row["status"] != COMPLETED]
        if failed:
            jobs = "; ".join(
                f"job {row['job']} ({row['status']}): {row['error']}" for row in failed
            )
            others = ", the others finished" if len(failed) < len(rows) else ""
            exit_with(
                RunFailed(
                    f"{len(failed)} of {len(rows)} jobs failed{others}: {jobs}. "
                    f"Summary: {sweep_dir / 'summary.csv'} (and summary.md, report.png)"
                )
            )
