"""The command line's error contract, in one place: how every way a run can end becomes an exit
status, and, where the user can act on it, one ``error:`` line instead of a traceback.

An entry point (``train.py``, later ``eval.py``) uses it twice::

    from ae_lab import cli

    @hydra.main(version_base="1.3", config_path="conf", config_name="train")
    def main(cfg):
        from ae_lab.train import run  # torch only once a run starts
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

In a ``-m`` sweep a job's failure does not end the process: it is written to the job's directory
(:data:`FAILURE_FILE`), told on one line, and the next job runs; the sweep's summary then marks it
and the sweep exits 1 (see :mod:`ae_lab.hydra_callbacks`). Only an interrupt stops a sweep.

Nothing here imports torch: ``--help`` and config errors answer at once.
"""

from __future__ import annotations

import difflib
import errno
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn

from hydra.errors import CompactHydraException, InstantiationException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from ae_lab.errors import RunFailed, RunInterrupted, UserError

log = logging.getLogger(__name__)

#: Written into a job's directory when the job fails: ``{"status", "exit_code", "error", "type"}``.
FAILURE_FILE = "failure.json"
#: ``OSError``s of the storage, not of the code: a full disk, a quota, a read-only or forbidden place
STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES}


def one_line(text: object) -> str:
    """``text`` with every run of whitespace, newlines included, made one space."""
    return " ".join(str(text).split())


@dataclass(frozen=True)
class Failure:
    """How a job ended when it did not finish: ``status`` is ``bad setting`` (exit 2), ``failed``
    (1), ``interrupted`` (130/143) or ``crashed`` (1, a bug: its traceback is kept)."""

    status: str
    exit_code: int
    error: str
    type: str

    @classmethod
    def of(cls, exc: BaseException) -> Failure:
        exc = unwrap(exc)
        message = one_line(exc)
        if isinstance(exc, UserError) or _is_misconfiguration(exc):
            return cls("bad setting", UserError.exit_code, message, type(exc).__name__)
        if isinstance(exc, RunInterrupted):
            return cls("interrupted", exc.exit_code, message, type(exc).__name__)
        if isinstance(exc, KeyboardInterrupt):
            return cls("interrupted", 130, "interrupted (Ctrl-C)", "KeyboardInterrupt")
        if isinstance(exc, RunFailed):
            return cls("failed", exc.exit_code, message, type(exc).__name__)
        if isinstance(exc, OSError) and exc.errno in STORAGE_ERRORS:
            where = f": {exc.filename}" if exc.filename else ""
            error = f"{exc.strerror}{where}. Free space or choose a writable paths.log_dir=DIR"
            return cls("failed", RunFailed.exit_code, error, type(exc).__name__)
        return cls("crashed", 1, f"{type(exc).__name__}: {message}", type(exc).__name__)

    @property
    def is_bug(self) -> bool:
        return self.status == "crashed"

    def write(self, folder: str | Path) -> None:
        """``failure.json`` in ``folder``, written atomically; only logged when even that fails
        (a full disk): the failure itself is what the user must see."""
        try:
            write_json_atomic(Path(folder) / FAILURE_FILE, asdict(self))
        except OSError as exc:
            log.warning("could not record the failure in %s: %s", folder, exc)


def _is_misconfiguration(exc: BaseException) -> bool:
    """Lightning's word for a setting it refuses, wherever it finds out (ModelCheckpoint's monitor,
    say, only at the end of the first validation). Lightning is loaded if it raised one."""
    if "lightning" not in sys.modules:
        return False
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    return isinstance(exc, MisconfigurationException)


def unwrap(exc: BaseException) -> BaseException:
    """The :class:`UserError` behind Hydra's "Error in call to target ..." wrapper, if that is
    what a constructor raised; ``exc`` itself otherwise."""
    while isinstance(exc, InstantiationException) and isinstance(exc.__cause__, UserError):
        exc = exc.__cause__
    return exc


def write_text_atomic(path: Path, text: str) -> None:
    """``path`` holds either its old content or all of ``text``, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def say(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def exit_with(exc: BaseException) -> NoReturn:
    """Print the ``error:`` line of a user-facing exception and exit with its status. A run that
    failed or was stopped may add lines after it (the command that resumes it, on its own line to
    copy); a bad setting is always one line."""
    failure = Failure.of(exc)
    inner = unwrap(exc)
    say(str(inner).strip() if isinstance(inner, (RunFailed, RunInterrupted)) else failure.error)
    sys.exit(failure.exit_code)


# ---- the task function's side: one job -------------------------------------------------------
def run_task(task: Callable[[DictConfig], Mapping[str, float]], cfg: DictConfig) -> Any:
    """Run ``task(cfg)`` as one Hydra job under the contract above; returns what a sweeper needs
    (:func:`objective`)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from ae_lab import run_dir

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
        say(f"job {hydra_cfg.job.num} failed ({output_dir}): {failure.error}")
        if failure.status == "interrupted":  # the user (or the cluster) stops the whole sweep
            from ae_lab.hydra_callbacks import write_summary

            write_summary(Path(hydra_cfg.sweep.dir))
            sys.exit(failure.exit_code)
        return objective(cfg, None)


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
        from ae_lab import run_dir

        run_dir.release()  # what Hydra managed to write of a run that never started
        exit_with(exc)
    finally:
        if before is None:
            del os.environ["HYDRA_FULL_ERROR"]
        else:
            os.environ["HYDRA_FULL_ERROR"] = before


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
