"""The job's side of a supervised sweep (:mod:`ae_lab.sweeps.launcher`): the process that runs one
job of a ``hydra/launcher=joblib`` sweep.

It leaves the sweep's process group (a signal reaches it once, forwarded by the sweep), asks the
kernel to send it SIGTERM should the sweep's process die (Linux), takes SIGINT and SIGTERM only
once it can stop cleanly, runs the job as joblib's launcher runs it in a worker, and hands back how
it went. Nothing here imports torch: :func:`ae_lab.cli.run_task` asks :func:`supervised`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import traceback
from multiprocessing.connection import Connection
from types import FrameType
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, run_job, setup_globals
from omegaconf import open_dict

try:  # a dependency of joblib >= 1.5, which earlier releases bundled
    import cloudpickle
except ImportError:  # pragma: no cover
    from joblib.externals import cloudpickle

from ae_lab.errors import one_line
from ae_lab.run.interrupts import Terminated

#: The signals that stop a sweep, forwarded by the sweep to its jobs.
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
PR_SET_PDEATHSIG = 1

_supervised = False


def supervised() -> bool:
    """Whether this process runs a job of a supervised sweep, whose own process tells the user
    how its jobs ended (:func:`ae_lab.cli.run_task`)."""
    return _supervised


def run(
    num: int, overrides: list[str], payload: bytes, results: Connection, sweep_pid: int
) -> None:
    """A job's process: leave the sweep's process group, end with the sweep's process, take
    SIGINT and SIGTERM (blocked until here), run the job as joblib's launcher runs it in a worker,
    and hand back ``("done", JobReturn)``, ``("stopped", signum)`` (stopped outside its run's own
    handling, before it began) or ``("crashed", error)``."""
    global _supervised
    _supervised = True
    with contextlib.suppress(OSError, AttributeError):
        os.setpgid(0, 0)
    _end_with(sweep_pid)
    signal.signal(signal.SIGTERM, _terminated)
    try:
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        hydra_context, config, task_function, state = cloudpickle.loads(payload)
        message: tuple[str, Any] = (
            "done",
            _execute(num, overrides, hydra_context, config, task_function, state),
        )
    except Terminated:  # SIGTERM outside the run's own handling (before it began, or after)
        message = ("stopped", int(signal.SIGTERM))
    except KeyboardInterrupt:  # Ctrl-C, the same
        message = ("stopped", int(signal.SIGINT))
    except SystemExit as exc:
        message = ("crashed", f"exited with status {exc.code} without a result")
    except BaseException as exc:  # noqa: B036 -- a bug outside the run: shown, then recorded
        traceback.print_exc()
        message = ("crashed", f"crashed: {type(exc).__name__}: {one_line(exc)}")
    for signum in STOP_SIGNALS:  # the job is over: a late stop request changes nothing
        signal.signal(signum, signal.SIG_IGN)
    try:
        data = cloudpickle.dumps(message)
    except Exception:  # a return value that does not pickle
        data = cloudpickle.dumps((message[0], None))
    with contextlib.suppress(OSError):  # (the sweep's process is gone)
        results.send_bytes(data)
    results.close()


def _execute(
    num: int,
    overrides: list[str],
    hydra_context: Any,
    config: Any,
    task_function: Any,
    singleton_state: dict[Any, Any],
) -> JobReturn:
    """What joblib's launcher runs in a worker: the job's config composed from the sweep's and
    its overrides, then Hydra's ``run_job`` in ``hydra.sweep.dir/hydra.sweep.subdir``."""
    setup_globals()
    Singleton.set_state(singleton_state)
    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{num}"
        sweep_config.hydra.job.num = num
    HydraConfig.instance().set_config(sweep_config)
    return run_job(
        hydra_context=hydra_context,
        config=sweep_config,
        task_function=task_function,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def _end_with(sweep_pid: int) -> None:
    """On Linux, have the kernel send this process SIGTERM when the sweep's process dies, however
    it dies; if it is gone already, stop now (the signal waits until it is unblocked)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != sweep_pid:
        os.kill(os.getpid(), signal.SIGTERM)
