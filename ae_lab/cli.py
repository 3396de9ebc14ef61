"""The entry points' side of how a run ends (:mod:`ae_lab.errors` holds the contract itself):
Hydra's own config errors as one ``error:`` line, a job's failure as its exit status, and in a
``-m`` sweep a failed job recorded in its directory while the next one runs.

An entry point (``train.py``, ``eval.py``) uses it twice::

    @hydra.main(version_base="1.3", config_path="conf", config_name="train")
    def main(cfg):
        from ae_lab.run.train import run  # torch only once a run starts
        return cli.run_task(run, cfg)

    if __name__ == "__main__":
        cli.main(main)

=========================================  ==========  ==========================================
 ends with                                  exit        shown as
=========================================  ==========  ==========================================
 a bad override or config (Hydra's own)     2           ``error: <Hydra's message, on one line>``
 a full, read-only or forbidden disk        1           ``error: <strerror>: <file>. ...``
 :class:`~ae_lab.errors.UserError`          2           ``error: <message>``
 Lightning's ``MisconfigurationException``  2           ``error: <message>``
 :class:`~ae_lab.errors.RunFailed`          1           ``error: <message>``
 :class:`~ae_lab.errors.RunInterrupted`     130 / 143   ``error: <message>``
 ``KeyboardInterrupt`` (Ctrl-C)             130         ``error: interrupted (Ctrl-C)``
 any other exception: a bug                 1           its traceback, untouched
=========================================  ==========  ==========================================

In a sweep a job's failure is written to the job's directory (``failure.json``), told on one line,
and the next job runs; the summary marks it and the sweep exits 1 (:mod:`ae_lab.sweeps`). Only an
interrupt stops a sweep. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hydra.errors import CompactHydraException, InstantiationException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from ae_lab.errors import (
    STORAGE_ERRORS,
    Failure,
    UserError,
    exit_with,
    say,
)

log = logging.getLogger(__name__)


# ---- the task function's side: one job -------------------------------------------------------
def run_task(task: Callable[[DictConfig], Mapping[str, float]], cfg: DictConfig) -> Any:
    """Run ``task(cfg)`` as one Hydra job under the contract above; returns what a sweeper needs
    (:func:`objective`)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from ae_lab.run import run_dir

    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    held_a_run = run_dir.holds_run(output_dir)  # then the job is refused, and must not touch it
    try:
        return objective(cfg, task(cfg))
    except BaseException as exc:  # noqa: B036 -- every way out is classified, bugs re-raised
        if isinstance(exc, SystemExit):
            raise
        failure = Failure.of(exc)
        refused = failure.exit_code == UserError.exit_code and not in_sweep
        if not held_a_run and not (refused and run_dir.release(output_dir)):
            failure.write(output_dir)  # (a run refused before it began leaves no directory)
        if failure.is_bug:
            if not in_sweep:
                raise  # Hydra prints the traceback; exit status 1
            log.error("job %s crashed", hydra_cfg.job.num, exc_info=exc)  # into the job's log
        if not in_sweep:
            exit_with(exc)
        if failure.status == "interrupted" and _supervised():
            # a job of a joblib sweep: the sweep's process stopped it, and tells how its jobs
            # ended (ae_lab.sweeps.launcher); the sweep goes on if it was this job alone
            log.info("job %s stopped: %s", hydra_cfg.job.num, failure.error)
            return objective(cfg, None)
        say(f"job {hydra_cfg.job.num} failed ({output_dir}): {failure.error}")
        if failure.status == "interrupted":  # the user (or the cluster) stops the whole sweep
            from ae_lab.sweeps.summary import write_summary

            write_summary(Path(hydra_cfg.sweep.dir))
            sys.exit(failure.exit_code)
        return objective(cfg, None)


def _supervised() -> bool:
    """Whether this process runs a job of a sweep whose own process supervises its jobs."""
    from ae_lab.sweeps.job_process import supervised

    return supervised()


def objective(cfg: DictConfig, metrics: Mapping[str, float] | None) -> Any:
    """What the job returns to Hydra: the value of ``cfg.optimized_metric`` when the config names
    one, else the metrics themselves; ``None`` for a failed job (or a non-finite value).

    ``None``, not NaN: hydra-optuna-sweeper 1.3.0 records a value it cannot turn into a float as a
    failed trial and goes on, but crashes the whole search on a NaN (it tells Optuna the failed
    trial's NaN again, which Optuna refuses: facebookresearch/hydra#2237). A finished job without
    that metric is a bad setting (:class:`UserError`), not a failed trial."""
    name = cfg.get("optimized_metric")
    if not name or metrics is None:
        return metrics if not name else None
    if name not in metrics:
        raise UserError(
            f"optimized_metric={name} is not a metric of this run (it has "
            f"{', '.join(sorted(metrics))}); the run itself finished and kept its metrics.json."
        )
    value = metrics[name]
    return value if value is not None and math.isfinite(value) else None


# ---- the process's side: composition errors and interrupts -----------------------------------
def main(hydra_main: Callable[[], Any]) -> None:
    """Call a ``@hydra.main`` function with Hydra's own config errors (unknown group option, unknown
    key, bad override syntax) turned into one ``error:`` line and exit status 2.

    Hydra prints those itself on several lines and exits 1; with ``HYDRA_FULL_ERROR=1`` set here it
    raises them instead. A user who sets ``HYDRA_FULL_ERROR=1`` gets Hydra's full output.
    """
    before = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    # A SIGTERM while Hydra composes the config (before the run's own handlers) ends the process
    # as a Ctrl-C there does: one line, exit 143, nothing of the run left behind.
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _stopped_before_the_run)
    try:
        hydra_main()
    except KeyboardInterrupt:
        exit_with(KeyboardInterrupt())
    except (CompactHydraException, OmegaConfBaseException) as exc:
        if before == "1" or isinstance(exc, InstantiationException):
            raise
        say(hydra_message(exc))
        sys.exit(2)
    except OSError as exc:  # Hydra writing .hydra/ or the log to a full or read-only disk
        if exc.errno not in STORAGE_ERRORS:
            raise
        from ae_lab.run import run_dir

        run_dir.release()  # what Hydra managed to write of a run that never started
        exit_with(exc)
    finally:
        if previous is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, previous)
        if before is None:
            del os.environ["HYDRA_FULL_ERROR"]
        else:
            os.environ["HYDRA_FULL_ERROR"] = before


def _stopped_before_the_run(signum: int, frame: Any) -> None:
    """Exit at once (143): nothing has run yet, and an exception raised here could surface inside
    whatever Hydra or OmegaConf is doing, wrapped in their own errors."""
    from ae_lab.run import run_dir

    with contextlib.suppress(Exception):
        run_dir.release()  # what Hydra managed to write of a run that never started
    say("stopped by SIGTERM before the run started; nothing was trained")
    sys.stderr.flush()
    os._exit(128 + signum)


def hydra_message(exc: BaseException) -> str:
    """One line for a Hydra or OmegaConf config error, with the valid keys when a key is unknown."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # Hydra appends its search path to a missing config's message: not the user's business
    lines = lines[: next((i for i, s in enumerate(lines) if s == "Config search path:"), None)]
    text, rest = (lines[0], lines[1:]) if lines else (type(exc).__name__, [])
    if rest and rest[0].startswith("Available options"):
        text, rest = f"{text}. {rest[0]} {', '.join(rest[1:])}", []
    cause = exc.__cause__
    if isinstance(cause, OmegaConfBaseException):
        text = f"{text.rstrip('.')}: {str(cause).splitlines()[0].strip()}"
        parent = getattr(cause, "parent_node", None)
        key = str(getattr(cause, "key", "") or "")
        if isinstance(parent, DictConfig) and key and key not in parent:
            valid = sorted(str(k) for k in parent if not str(k).startswith("_"))
            close = difflib.get_close_matches(key, valid, n=1)
            text += f". Did you mean {close[0]}?" if close else ""
            text += f" Valid keys there: {', '.join(valid)}"
    if rest:
        text = f"{text.rstrip('.')} ({'; '.join(rest)})"
    return text
