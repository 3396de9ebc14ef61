"""Ctrl-C and SIGTERM stop a run cleanly, wherever it is.

While :func:`handling_signals` is active (``ae_lab.run.train.run`` holds it for the whole run):

- **Inside Lightning's loops** (the fit, its validations, the sanity check, the final validation
  and test), SIGTERM and a first Ctrl-C ask Lightning to stop: the current batch (a training or a
  validation batch) finishes, then ``SIGTERMException`` ends the loop
  (:class:`~ae_lab.run.callbacks.GracefulStop` makes sure of it at every evaluation batch), and
  :class:`~ae_lab.run.callbacks.ResumableCheckpoint` saves ``last.ckpt`` holding whole steps. A
  validation of the fit that is stopped half-way is dropped: its metrics are neither logged nor
  scored, and ``last.ckpt`` holds the state it started from, so the resumed run does it again. A
  second Ctrl-C stops at once, without saving.
- **Anywhere else** (reading the data, building the model, between the fit and the final
  evaluation), SIGTERM raises :class:`Terminated`, a ``KeyboardInterrupt``, exactly where Ctrl-C
  raises one, so the same clean-up code runs for both.

:func:`received` tells which signal came first, so the caller can end the run with
:class:`~ae_lab.errors.RunInterrupted` and the right exit status (130 or 143).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}
Handler = Callable[[int, FrameType | None], Any]


class Terminated(KeyboardInterrupt):
    """SIGTERM outside Lightning's loops: raised where Ctrl-C would raise ``KeyboardInterrupt``."""


class _Handlers:
    def __init__(self) -> None:
        self.received: int | None = None
        self.presses = 0
        # bound methods are new objects at each access: keep the ones installed, to compare
        self.on_sigint = self._on_sigint
        self.on_sigterm = self._on_sigterm

    def _note(self, signum: int) -> None:
        if self.received is None:
            self.received = int(signum)

    def lightning_handler(self) -> Handler | None:
        """Lightning's SIGTERM handler when a fit or an evaluation has installed one (it calls
        ours after its own)."""
        current = signal.getsignal(signal.SIGTERM)
        return current if callable(current) and current is not self.on_sigterm else None

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        self._note(signum)
        self.presses += 1
        lightning = self.lightning_handler()
        if self.presses == 1 and lightning is not None:
            print(
                "\nCtrl-C: stopping after this batch and saving checkpoints/last.ckpt; press "
                "Ctrl-C again to stop at once, without saving",
                file=sys.stderr,
                flush=True,
            )
            lightning(signal.SIGTERM, frame)  # Lightning's way to stop: at the end of the batch
            return
        raise KeyboardInterrupt

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self._note(signum)
        if self.lightning_handler() is not None:
            return  # called by Lightning's handler, which stops the loop at the end of the batch
        raise Terminated


_active: _Handlers | None = None


def received() -> int | None:
    """The first signal (``signal.SIGINT`` or ``signal.SIGTERM``) received by the active
    :func:`handling_signals`, or ``None``."""
    return _active.received if _active is not None else None


@contextlib.contextmanager
def handling_signals() -> Iterator[None]:
    """Install the handlers described above; the previous ones are put back after.

    Signals can only be handled in the main thread: elsewhere this does nothing. A signal the
    parent process set to be ignored (``nohup``, a shell's ``cmd &`` for SIGINT) stays ignored.
    """
    global _active
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers, outer = _Handlers(), _active
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for signum, handler in (
        (signal.SIGINT, handlers.on_sigint),
        (signal.SIGTERM, handlers.on_sigterm),
    ):
        if (
            previous[signum] is not signal.SIG_IGN
        ):  # ignored by the parent (nohup, `cmd &`): so be it
            signal.signal(signum, handler)
    _active = handlers
    try:
        yield
    finally:
        _active = outer
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
