"""The sweep's handle on one job's process (:mod:`ae_lab.sweeps.launcher`), and the signal masks
both sides use."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

#: How long a stopped sweep waits for its running jobs to save and end before it kills them.
STOP_GRACE_S = 120.0
#: Where a job's last checkpoint is (``conf/callbacks/checkpoint.yaml``), for the resume command.
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
#: The default ``hydra.sweep.subdir``: a job's folder is its number.
JOB_NUMBER = "${hydra.job.num}"


@dataclass
class Job:
    num: int
    overrides: list[str]
    process: Any = None  # multiprocessing's Process, once started
    results: Connection | None = None
    started: float = 0.0
    message: tuple[str, Any] | None = None  # what the job's process handed back
    message_at: float | None = None
    drained: bool = False  # its result pipe is read (or closed)
    forwarded: int = 0  # how many of the sweep's signals it was sent
    stopping_since: float | None = None  # since when it has been asked to stop
    timed_out: bool = False
    killed: bool = False  # by the sweep, for not stopping in time
    folder: Path | None = None
    task_overrides: list[str] | None = None

    def send(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signum)
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()

    def kill(self) -> None:
        """SIGKILL to the job's process group (the job and the processes it started)."""
        self.killed = True
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, AttributeError):  # no group of its own yet
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def block(signals: set[int]) -> set[int] | None:
    if not hasattr(signal, "pthread_sigmask"):
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, signals)


def unblock(previous: set[int] | None) -> None:
    if previous is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
