"""The exceptions that reach the user as one short ``error:`` line instead of a traceback, and the
exit status each one ends the process with.

=====  ==========================================================================================
 0     the run finished and its metrics are real numbers
 1     the run started and failed (:class:`RunFailed`: divergence, a crash in a job of a sweep...)
 2     a bad setting or bad input, refused before any training (:class:`UserError`)
 130   interrupted by Ctrl-C (SIGINT); ``last.ckpt`` kept, resume with ``ckpt_path=``
 143   terminated by SIGTERM (``timeout``, ``docker stop``, a cluster's preemption); the same
=====  ==========================================================================================
"""

from __future__ import annotations

import signal


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
