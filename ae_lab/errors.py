"""How a run ends, in one place: the exceptions a user can act on, the exit status of each, and
:class:`Failure`, the classification every entry point, job and sweep summary shares.

=====  ==========================================================================================
 0     the run finished and its metrics are real numbers
 1     the run started and failed (:class:`RunFailed`: divergence, a full disk, a crashed job...)
 2     a bad setting or bad input, refused before any training (:class:`UserError`)
 130   interrupted by Ctrl-C (SIGINT); ``last.ckpt`` kept, resume with ``ckpt_path=``
 143   terminated by SIGTERM (``timeout``, ``docker stop``, a cluster's preemption); the same
=====  ==========================================================================================

Each reaches the user as one ``error:`` line (:func:`exit_with`); a bug keeps its traceback.
Nothing here imports torch: ``--help`` and config errors answer at once.
"""

from __future__ import annotations

import errno
import json
import logging
import signal
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NoReturn

from hydra.errors import InstantiationException

from ae_lab import atomic
from ae_lab.layout import FAILURE_FILE

log = logging.getLogger(__name__)

#: ``OSError``s of the storage, not of the code: a full disk, a quota, a read-only or forbidden place
STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES}


class UserError(Exception):
    """Bad input the user can fix: the message says what is wrong and how to fix it.

    Printed as ``error: <message>``; exit status 2.
    """

    exit_code = 2


class RunFailed(Exception):
    """A run that started and could not finish (a diverging loss, a job that crashed). The message
    says what happened, what was kept and how to go on. Exit status 1."""

    exit_code = 1


class RunInterrupted(Exception):
    """A run stopped by a signal (Ctrl-C or SIGTERM) after saving what it could; the message says
    how to resume. Exit status ``128 + signal number``: 130 for SIGINT, 143 for SIGTERM."""

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


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
            atomic.write_text(
                Path(folder) / FAILURE_FILE, json.dumps(asdict(self), indent=2) + "\n"
            )
        except OSError as exc:
            log.warning("could not record the failure in %s: %s", folder, exc)


def _is_misconfiguration(exc: BaseException) -> bool:
    """Lightning's word for a setting it refuses, wherever it finds out (ModelCheckpoint's monitor,
    say, only at the end of the first validation); known by name, so this module needs no
    Lightning."""
    return any(cls.__name__ == "MisconfigurationException" for cls in type(exc).__mro__)


def unwrap(exc: BaseException) -> BaseException:
    """The :class:`UserError` behind Hydra's "Error in call to target ..." wrapper, if that is
    what a constructor raised; ``exc`` itself otherwise."""
    while isinstance(exc, InstantiationException) and isinstance(exc.__cause__, UserError):
        exc = exc.__cause__
    return exc


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
