"""Ctrl-C and SIGTERM stop a run cleanly, wherever it is.

While :func:`handling_signals` is active (``ae_lab.run.train.run`` holds it for the whole run):

- **While training** (from the first step of a fit), SIGTERM and a first Ctrl-C ask Lightning to
  stop: it finishes the current batch, then raises ``SIGTERMException``, and
  :class:`~ae_lab.run.callbacks.ResumableCheckpoint` saves ``last.ckpt`` holding whole steps. A signal
  that arrives during a validation inside the fit waits for the validation to end (its metrics,
  figures and checkpoints are written), so the run never stops half-way through one: Lightning
  cannot resume a half-done validation faithfully. :class:`~ae_lab.run.callbacks.GracefulStop` marks
  these points. A second Ctrl-C stops at once, without saving.
- **In Lightning's other stages** (the sanity check, the final validation and test), Lightning's
  own SIGTERM handling stops at the end of the current batch.
- **Anywhere else** (reading the data, building the model), SIGTERM raises :class:`Terminated`, a
  ``KeyboardInterrupt``, exactly where Ctrl-C raises one, so the same clean-up code runs for both.

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
        self.stop_requested = False
        self.held = False  # inside a validation of the fit: a stop request waits for its end
        self.pending: FrameType | None | bool = False
        self.lightning: Handler | None = None  # Lightning's SIGTERM handler, once taken over
        # bound methods are new objects at each access: keep the ones installed, to compare
        self.on_sigint = self._on_sigint
        self.on_sigterm = self._on_sigterm
        self.on_sigterm_in_fit = self._on_sigterm_in_fit

    def _note(self, signum: int) -> None:
        if self.received is None:
            self.received = int(signum)

    def lightning_handler(self) -> Handler | None:
        """Lightning's SIGTERM handler when a fit or an evaluation has installed one."""
        current = signal.getsignal(signal.SIGTERM)
        if current is self.on_sigterm_in_fit:
            return self.on_sigterm_in_fit
        return current if callable(current) and current is not self.on_sigterm else None

    # ---- the handlers --------------------------------------------------------------------------
    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        self._note(signum)
        self.presses += 1
        lightning = self.lightning_handler()
        if self.presses == 1 and lightning is not None:
            print(
                "\nCtrl-C: stopping after this batch (or this validation) and saving "
                "checkpoints/last.ckpt; press Ctrl-C again to stop at once, without saving",
                file=sys.stderr,
                flush=True,
            )
            if lightning is self.on_sigterm_in_fit:
                self.request_stop(frame)
            else:
                lightning(signal.SIGTERM, frame)
            return
        raise KeyboardInterrupt

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self._note(signum)
        if self.lightning_handler() is not None:
            return  # called by Lightning's handler, which stops the loop at the end of the batch
        raise Terminated

    def _on_sigterm_in_fit(self, signum: int, frame: FrameType | None) -> None:
        self._note(signum)
        self.request_stop(frame)

    # ---- stopping a fit at a clean point -------------------------------------------------------
    def take_over(self) -> None:
        """Route SIGTERM through :meth:`request_stop` for the rest of this fit (Lightning puts its
        own handler back, and then ours, when the fit ends)."""
        current = signal.getsignal(signal.SIGTERM)
        if not callable(current) or current in (self.on_sigterm, self.on_sigterm_in_fit):
            return
        self.lightning = current
        signal.signal(signal.SIGTERM, self.on_sigterm_in_fit)

    def request_stop(self, frame: FrameType | None) -> None:
        if self.stop_requested:
            return
        if self.held:
            self.pending = frame if frame is not None else True
            return
        self.stop_requested = True
        if self.lightning is not None:
            self.lightning(signal.SIGTERM, frame)

    def hold(self) -> None:
        self.held = True

    def release(self) -> None:
        self.held = False
        if self.pending is not False:
            frame, self.pending = self.pending, False
            self.request_stop(frame if not isinstance(frame, bool) else None)


_active: _Handlers | None = None


def received() -> int | None:
    """The first signal (``signal.SIGINT`` or ``signal.SIGTERM``) received by the active
    :func:`handling_signals`, or ``None``."""
    return _active.received if _active is not None else None


def take_over_in_fit() -> None:
    """From now until the fit ends, stop requests wait while :func:`hold` is in effect."""
    if _active is not None and threading.current_thread() is threading.main_thread():
        _active.take_over()


def hold() -> None:
    """Keep a stop request pending (a validation is running)."""
    if _active is not None:
        _active.hold()


def release() -> None:
    """Hand on a stop request that arrived while held."""
    if _active is not None:
        _active.release()


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
