"""The jobs of a ``hydra/launcher=joblib`` sweep, each in a process of its own that the sweep's
process supervises, so that a sweep survives its own faults.

Hydra's joblib launcher hands the jobs to joblib's pool of loky workers, which left a sweep without
defence: a SIGTERM to the sweep's process ended it at once, without a summary, while its workers
trained on as orphans; a worker killed by the out-of-memory killer broke the whole pool (a
``TerminatedWorkerError`` traceback, the other running jobs killed unrecorded, the later jobs never
run); idle workers outlived the sweep. Here (:func:`launch`, called by the launcher class in
``hydra_plugins/ae_lab_sweepers/joblib_launcher.py``, which
:class:`~ae_lab.sweeps.callbacks.SupervisedJobs` puts in the plugin's place) each job runs in a
fresh process (``spawn``), and:

- **at most ``hydra.launcher.n_jobs`` run at once**; each is started when a slot frees and joined
  when it ends, so a sweep leaves no process behind, however it ends.
- **a signal reaches a job once, from the sweep**: each job has a process group of its own, and a
  SIGTERM or Ctrl-C to the sweep's process (or to its process group: a terminal's Ctrl-C,
  ``timeout``) is forwarded to each running job, which saves ``last.ckpt`` and records itself as
  interrupted (:mod:`ae_lab.run.interrupts`). No job starts after it. The sweep waits up to
  :data:`STOP_GRACE_S` for its jobs (a second Ctrl-C stops them at once, without saving), kills
  any still running, records the jobs that never started as ``not run``, writes its summary and
  report, and exits 130/143 with one ``error:`` line followed by the commands that finish the rest.
- **a job killed on its own** (``kill -9``, the out-of-memory killer, a crash of the interpreter) is
  recorded as failed in its folder (``failure.json`` naming the signal, and the command that
  resumes it from its ``last.ckpt`` when it has one); the other jobs run on, the summary marks it
  and the sweep exits 1 (:class:`~ae_lab.sweeps.callbacks.SweepSummary`).
- **on Linux a job ends with the sweep**: should the sweep's process die without a word
  (``kill -9``), the kernel sends each job SIGTERM (``PR_SET_PDEATHSIG``): it saves and stops
  instead of training on as an orphan.
- ``hydra.launcher.timeout`` (seconds, joblib's setting) stops a job that runs longer, as a SIGTERM
  does: it saves ``last.ckpt``, is recorded as interrupted, and the sweep goes on. joblib's other
  settings (backend, batch_size, pre_dispatch, memory mapping) concern its pool of workers and
  have no meaning here.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from multiprocessing.connection import wait
from pathlib import Path
from types import FrameType
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import (
    JobReturn,
    configure_log,
    filter_overrides,
    setup_globals,
)

try:  # a dependency of joblib >= 1.5, which earlier releases bundled
    import cloudpickle
except ImportError:  # pragma: no cover
    from joblib.externals import cloudpickle

from ae_lab.run import parallel
from ae_lab.run.interrupts import NAMES
from ae_lab.sweeps import job_process
from ae_lab.sweeps.jobs import STOP_GRACE_S, Job, block, unblock
from ae_lab.sweeps.records import Records

log = logging.getLogger(__name__)

#: How long a job that has handed back its result may take to end before it is killed.
EXIT_GRACE_S = 30.0
#: How often the sweep looks at its jobs, in seconds (and so how soon it forwards a signal).
POLL_S = 0.2


def launch(
    launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
) -> list[JobReturn]:
    """Run ``job_overrides`` as the jobs ``initial_job_idx``, ``initial_job_idx + 1``... of the
    sweep ``launcher`` was set up for (its ``config``, ``hydra_context``, ``task_function`` and
    joblib's settings in ``launcher.joblib``); returns their ``JobReturn``\\ s in order. A signal
    to this process ends it here (exit 130 or 143) once the jobs have stopped and the summary is
    written."""
    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    sweep = _Sweep(launcher, job_overrides, initial_job_idx)
    sweep.sweep_dir.mkdir(parents=True, exist_ok=True)
    log.info(
        "Launching %d jobs, %d at a time, each in a process of its own; sweep output dir: %s",
        len(sweep.jobs),
        sweep.at_once,
        sweep.sweep_dir,
    )
    for job in sweep.jobs:
        log.info("\t#%d : %s", job.num, " ".join(filter_overrides(job.overrides)))
    return sweep.run()


class _Sweep(Records):
    def __init__(self, launcher: Any, job_overrides: Sequence[Sequence[str]], first: int) -> None:
        self.config = launcher.config
        self.hydra_context = launcher.hydra_context
        self.task_function = launcher.task_function
        self.sweep_dir = Path(str(self.config.hydra.sweep.dir))
        self.jobs = [Job(first + i, list(o)) for i, o in enumerate(job_overrides)]
        settings = launcher.joblib
        n_jobs = settings.get("n_jobs")
        self.at_once = parallel.jobs_at_once(
            -1 if n_jobs is None else int(n_jobs), parallel.cores(), len(self.jobs)
        )
        timeout = settings.get("timeout")
        self.timeout = float(timeout) if timeout else None
        self.signals: list[int] = []  # received by this process, in order
        self.stopping = False
        self.running: list[Job] = []
        self._payload: bytes | None = None

    # ---- the whole run -----------------------------------------------------------------------------
    def run(self) -> list[JobReturn]:
        with self._catching_signals():
            try:
                self._supervise()
            finally:
                self._end_all()  # (only a bug of this module gets here with jobs running)
            if self.signals:
                self._stopped()
        return [self._returned(job) for job in self.jobs]

    def _supervise(self) -> None:
        waiting = list(self.jobs)
        while waiting or self.running:
            if self.signals:
                if not self.stopping:
                    self.stopping = True
                    self._announce_stop(len(waiting))
                    waiting.clear()  # no job starts once the sweep is stopping
                self._forward()
            while waiting and len(self.running) < self.at_once:
                self._start(waiting.pop(0))
            self._wait()
            self._enforce_limits()

    @contextlib.contextmanager
    def _catching_signals(self) -> Iterator[None]:
        """SIGINT and SIGTERM recorded (and forwarded by :meth:`_supervise`) instead of ending this
        process; a signal set to be ignored (``nohup``, a shell's ``cmd &``) stays ignored."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.getsignal(s) for s in job_process.STOP_SIGNALS}
        for signum, handler in previous.items():
            if handler is not signal.SIG_IGN:
                signal.signal(signum, self._on_signal)
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(int(signum))

    # ---- starting, watching and stopping jobs ------------------------------------------------------
    def _start(self, job: Job) -> None:
        if self._payload is None:  # what every job needs, as joblib's launcher hands it to a worker
            self._payload = cloudpickle.dumps(
                (self.hydra_context, self.config, self.task_function, Singleton.get_state())
            )
        context = multiprocessing.get_context("spawn")
        results, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=job_process.run,
            args=(job.num, job.overrides, self._payload, sender, os.getpid()),
            name=f"ae_lab sweep job {job.num}",
        )
        # The new process starts with SIGINT and SIGTERM blocked (they are inherited), and takes
        # them only once it has left this process group and can stop cleanly: a Ctrl-C meant for
        # the sweep cannot kill it half-started, and a stop forwarded early waits for it.
        blocked = block(job_process.STOP_SIGNALS)
        try:
            process.start()
        except OSError as exc:  # no memory or no process slot left to start it
            job.message = ("crashed", f"could not start its process: {exc}")
            results.close()
            self._record(job)
            return
        else:
            job.process, job.results, job.started = process, results, time.monotonic()
            self.running.append(job)
        finally:
            unblock(blocked)
            sender.close()  # the job's process holds its own copy

    def _wait(self) -> None:
        handles = [job.process.sentinel for job in self.running]
        handles += [job.results for job in self.running if not job.drained]
        if handles:
            wait(handles, timeout=POLL_S)
        else:
            time.sleep(POLL_S)
        for job in list(self.running):
            alive = job.process.is_alive()
            self._receive(job)
            if not alive:
                job.process.join()
                job.results.close()
                self.running.remove(job)
                self._record(job)

    def _receive(self, job: Job) -> None:
        if job.drained:
            return
        try:
            if not job.results.poll():
                return
            data = job.results.recv_bytes()
        except (EOFError, OSError):  # the process ended without handing anything back
            job.drained = True
            return
        job.drained, job.message_at = True, time.monotonic()
        try:
            job.message = cloudpickle.loads(data)
        except Exception as exc:
            job.message = ("crashed", f"handed back a result that could not be read: {exc!r}")

    def _forward(self) -> None:
        """Each signal this process received, sent once to each running job."""
        for job in self.running:
            while job.forwarded < len(self.signals):
                job.send(self.signals[job.forwarded])
                job.forwarded += 1

    def _enforce_limits(self) -> None:
        now = time.monotonic()
        for job in self.running:
            if (
                self.timeout is not None
                and job.message is None
                and not job.timed_out
                and now - job.started > self.timeout
            ):
                job.timed_out = True
                print(
                    f"job {job.num} ran past hydra.launcher.timeout={self.timeout:g} s: stopping "
                    "it as SIGTERM does (in training, it saves checkpoints/last.ckpt first); the "
                    "other jobs go on",
                    file=sys.stderr,
                    flush=True,
                )
                job.send(signal.SIGTERM)
            if job.killed:
                continue
            if job.message is not None:  # done, but its process does not end
                if now - (job.message_at or now) > EXIT_GRACE_S:
                    job.kill()
            elif job.stopping_since is not None and now - job.stopping_since > STOP_GRACE_S:
                job.kill()

    def _end_all(self) -> None:
        """Stop and join every job still running (after a bug here): SIGTERM, then SIGKILL."""
        if not self.running:
            return
        for job in self.running:
            job.send(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for job in self.running:
            job.process.join(max(0.0, deadline - time.monotonic()))
            if job.process.is_alive():
                job.kill()
                job.process.join()
        self.running.clear()

    def _announce_stop(self, not_started: int) -> None:
        first = self.signals[0]
        text = f"{NAMES.get(first, f'signal {first}')}: stopping the sweep"
        if self.running:
            running = ", ".join(str(job.num) for job in self.running)
            again = "; Ctrl-C again stops them at once, without saving"
            text += (
                f"; asked job(s) {running} to stop (a job in training saves "
                f"checkpoints/last.ckpt first) and waiting up to {STOP_GRACE_S:.0f} s for them"
                f"{again if first == signal.SIGINT else ''}"
            )
        if not_started:
            text += f"; {not_started} job(s) will not start"
        print(text, file=sys.stderr, flush=True)
