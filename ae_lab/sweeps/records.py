"""What each job of a supervised sweep left (:mod:`ae_lab.sweeps.launcher`): its folder, its
``failure.json`` when the sweep had to write it (a job killed, stopped or never started), what it
hands back to Hydra, and how a stopped sweep ends: the summary, one ``error:`` line and the
commands that finish the rest."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import NoReturn

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import (
    JobReturn,
    JobStatus,
)
from omegaconf import OmegaConf, open_dict

from ae_lab import atomic
from ae_lab.errors import Failure, RunInterrupted, exit_with, one_line, say
from ae_lab.layout import FAILURE_FILE, METRICS_FILE
from ae_lab.run.commands import command, hydra_value
from ae_lab.run.interrupts import NAMES
from ae_lab.sweeps import callbacks
from ae_lab.sweeps.jobs import JOB_NUMBER, LAST_CHECKPOINT, STOP_GRACE_S, Job, signal_name
from ae_lab.sweeps.summary import FAILED, INTERRUPTED, NOT_RUN

log = logging.getLogger(__name__)


class Records:
    """The part of :class:`~ae_lab.sweeps.launcher._Sweep` that records and reports jobs."""

    # ---- what each job left ------------------------------------------------------------------------
    def _folder(self, job: Job) -> Path:
        """The job's directory and its task overrides, as Hydra's ``run_job`` makes them."""
        if job.folder is not None:
            return job.folder
        sweep = OmegaConf.to_container(self.config.hydra.sweep, resolve=False)
        if sweep.get("subdir") == JOB_NUMBER:
            job.folder = self.sweep_dir / str(job.num)
            job.task_overrides = [o for o in job.overrides if not o.startswith("hydra.")]
            return job.folder
        holder = HydraConfig.instance()
        before = holder.cfg
        try:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, job.overrides)
            with open_dict(cfg):
                cfg.hydra.job.id = f"{cfg.hydra.job.name}_{job.num}"
                cfg.hydra.job.num = job.num
            holder.set_config(cfg)
            job.folder = Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
            job.task_overrides = list(cfg.hydra.overrides.task)
        except Exception as exc:  # the job could not compose its config either: it said why
            log.warning("job %d: could not compose its config (%s)", job.num, one_line(exc))
            job.folder = self.sweep_dir / str(job.num)
            job.task_overrides = [o for o in job.overrides if not o.startswith("hydra.")]
        finally:
            holder.cfg = before
        return job.folder

    def _record(self, job: Job) -> None:
        """After a job's process ended: its ``failure.json`` when it left no record of its own."""
        folder = self._folder(job)
        if (folder / FAILURE_FILE).exists() and not self.signals:
            # stopped on its own (its timeout, a signal to it alone): say so as of any failed job
            with contextlib.suppress(OSError, ValueError, KeyError):
                recorded = json.loads((folder / FAILURE_FILE).read_text())
                if recorded["status"] == INTERRUPTED:
                    say(f"job {job.num} failed ({folder}): {recorded['error']}")
        if (folder / METRICS_FILE).exists() or (folder / FAILURE_FILE).exists():
            return  # it recorded its own outcome (a finished, failed or interrupted run)
        failure = self._failure(job, folder)
        if failure is None:
            return
        self._write_record(job, failure)
        if not self.signals:  # (a stopped sweep tells it all in one line)
            say(f"job {job.num} failed ({folder}): {failure.error}")

    def _failure(self, job: Job, folder: Path) -> Failure | None:
        kind, detail = job.message or ("", None)
        if kind == "done":
            return None  # its run returned without a record: the summary says "no result"
        if kind == "crashed":
            return Failure("crashed", 1, f"the job {detail}", "JobProcessError")
        if kind == "stopped":  # before its run began (its config, its folder, importing torch)
            stop = int(detail or signal.SIGTERM)
            if not folder.is_dir():
                return self._not_run(stop)
            return Failure(
                INTERRUPTED,
                128 + stop,
                f"stopped by {NAMES[stop]} before the run began; nothing was trained or saved.",
                "RunInterrupted",
            )
        code = job.process.exitcode if job.process is not None else None
        kept = self._kept(job)
        if job.killed:
            if job.message is not None:
                why = "after handing back its result"
            elif job.timed_out and not self.signals:
                why = f"of SIGTERM (hydra.launcher.timeout={self.timeout:g} s)"
            else:
                why = f"of {NAMES.get(self.signals[0], 'the stop')}" if self.signals else ""
            return Failure(
                INTERRUPTED,
                128 + signal.SIGKILL,
                f"the job did not end within {STOP_GRACE_S:.0f} s {why}, so the sweep killed "
                f"it (SIGKILL){kept}",
                "Killed",
            )
        if code is not None and code < 0:
            name = signal_name(-code)
            oom = " (as the out-of-memory killer does)" if -code == signal.SIGKILL else ""
            return Failure(
                FAILED,
                128 - code,
                f"the job's process was killed by {name}{oom}{kept}",
                "Killed",
            )
        return Failure(
            FAILED,
            code or 1,
            f"the job's process ended (exit status {code}) without a result{kept}",
            "JobProcessError",
        )

    def _not_run(self, signum: int) -> Failure:
        return Failure(
            NOT_RUN,
            None,  # type: ignore[arg-type]  (it never ran: no exit status)
            f"not started: the sweep was stopped by {NAMES[signum]} first",
            "NotRun",
        )

    def _kept(self, job: Job) -> str:
        """``; resume ...`` with the command that resumes the job from its last checkpoint."""
        folder = self._folder(job)
        if (folder / LAST_CHECKPOINT).is_file():
            return (
                f"; its last checkpoint is {folder / LAST_CHECKPOINT}. Resume from it with: "
                f"{self._finish_command(job)}"
            )
        return f"; it left no {LAST_CHECKPOINT}"

    def _write_record(self, job: Job, failure: Failure) -> None:
        """``failure.json`` in the job's folder, and the job's overrides where Hydra keeps them
        (``.hydra/overrides.yaml``) when it never wrote them, so the summary lists the job."""
        folder = self._folder(job)
        overrides = folder / ".hydra" / "overrides.yaml"
        if not overrides.exists():
            atomic.write_text(overrides, OmegaConf.to_yaml(OmegaConf.create(job.task_overrides)))
        failure.write(folder)

    def _finish_command(self, job: Job) -> str:
        """The command that runs ``job`` on its own: from its ``last.ckpt`` when it has one."""
        folder = self._folder(job)
        overrides = list(job.task_overrides or [])
        checkpoint = folder / LAST_CHECKPOINT
        if checkpoint.is_file():
            overrides = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] != "ckpt_path"]
            overrides.append(f"ckpt_path={hydra_value(str(checkpoint.resolve()))}")
        script = Path(sys.argv[0]).name if sys.argv and sys.argv[0].endswith(".py") else "train.py"
        return command(script, overrides)

    def _returned(self, job: Job) -> JobReturn:
        kind, detail = job.message or ("", None)
        if kind == "done" and isinstance(detail, JobReturn):
            return detail
        # a job without a result counts as a failed job: its run_task would have returned None
        return JobReturn(
            overrides=job.task_overrides or job.overrides,
            working_dir=os.getcwd(),
            task_name=self.config.hydra.job.name,
            status=JobStatus.COMPLETED,
            _return_value=None,
        )

    def _stopped(self) -> NoReturn:
        """The sweep was stopped: record the jobs that never started, write the summary and
        report, and end with one ``error:`` line and the commands that finish the rest."""
        signum = self.signals[0]
        for job in self.jobs:
            if job.process is None and job.message is None:
                self._write_record(job, self._not_run(signum))
        rows = callbacks.summarise(self.sweep_dir, self.config.get("optimized_metric"))
        statuses = {str(row["job"]): row["status"] for row in rows}
        counts = Counter(row["status"] for row in rows)
        told = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        rest = [
            f"{self._finish_command(job)}  # job {job.num}"
            for job in self.jobs
            if statuses.get(self._folder(job).name) in (INTERRUPTED, NOT_RUN)
        ]
        message = (
            f"the sweep was stopped by {NAMES[signum]}: of its {len(rows)} jobs, {told}. "
            f"Summary: {self.sweep_dir / 'summary.csv'} (and summary.md, report.png)"
        )
        if rest:
            message += ". To finish the rest, run:\n" + "\n".join(f"  {line}" for line in rest)
        exit_with(RunInterrupted(message, signum))
