"""The decode workers of a build: :func:`decode_all` decodes every file, in order, in forked
processes (threads where fork is not available).

A worker never outlives the build: the kernel kills it when the builder's thread ends
(``PR_SET_PDEATHSIG``), it ignores Ctrl-C (the builder handles it), and a build that stops early
(Ctrl-C, SIGTERM, an error, a full disk) kills it instead of waiting for its chunk. Workers hold no
lock (the build lock is a record lock, which a forked child does not inherit). The pool is this
module's own and has no thread: a ``ProcessPoolExecutor`` whose worker is killed mid-answer leaves
its manager thread waiting forever, and the interpreter waits for that thread at exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import multiprocessing
import os
import pickle
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from ae_lab.data.image_cache import decode
from ae_lab.errors import RunFailed

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_AHEAD = 2  # chunks sent to each worker ahead, so it never waits for its next one
_STOPS = (signal.SIGINT, signal.SIGTERM)
_BROKEN = (
    "image cache: a decode worker ended unexpectedly (killed, or out of memory?); nothing was "
    "kept. Run again, or with data.cache_workers=1"
)


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


# ---- one worker ----------------------------------------------------------------------------------
def die_with_parent() -> None:
    """Ask the kernel to kill this process when the thread that forked it ends (Linux): the
    builder's thread, which lives until the workers are ended."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _start_worker(parent: int) -> None:
    """First thing a decode worker process does."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the builder
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # stops us; no handler inherited from it
    die_with_parent()
    if os.getppid() != parent:  # the builder died before we asked
        os._exit(1)


def _portable(error: BaseException) -> BaseException:
    """``error``, or a RuntimeError that says what it was when it cannot be sent."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


def _serve(
    conn: Connection,
    others: list[Connection],
    chunks: list[list[str]],
    crop: int | None,
    size: tuple[int, int],
    parent: int,
) -> None:
    """A decode worker: decodes the chunks the builder names (by index: the chunks came with the
    fork) and answers ``(index, results or the exception)``, until the builder is gone."""
    _start_worker(parent)
    for other in others:  # the builder's ends (ours too): its end closing reads as our end
        other.close()
    try:
        while True:
            index = conn.recv()
            try:
                reply: object = decode.decode_chunk(chunks[index], crop, size)
            except BaseException as error:  # the builder raises it (decode skips bad files)
                reply = _portable(error)
            conn.send((index, reply))
    except (EOFError, OSError):  # the builder is gone, or ended us: nobody to answer
        pass


# ---- the builder's side --------------------------------------------------------------------------
@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Deliver Ctrl-C and SIGTERM after the block. Forking runs the interpreter's at-fork hooks,
    which print the exception a signal handler raises in them and drop it (the stop would be lost);
    and an interrupted clean-up would leave workers running."""
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers run in the main thread only: none can run in this one
        return
    held: list[int] = []
    handlers = {s: signal.getsignal(s) for s in _STOPS}
    handlers = {s: h for s, h in handlers.items() if callable(h)}  # not SIG_IGN nor SIG_DFL
    try:
        for signum in handlers:
            signal.signal(signum, lambda received, frame: held.append(received))
        yield
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for signum in held:  # the handler runs now, here; what it raises goes on from here
            signal.raise_signal(signum)


class _Workers:
    """Decode worker processes and the builder's end of each one's pipe."""

    def __init__(self) -> None:
        self.processes: list[BaseProcess] = []
        self.conns: list[Connection] = []

    def start(self, count: int, chunks: list[list[str]], crop: int | None, size: tuple[int, int]):
        context = multiprocessing.get_context("fork")
        with _signals_held():
            for _ in range(count):
                mine, theirs = context.Pipe()
                self.conns.append(mine)
                args = (theirs, list(self.conns), chunks, crop, size, os.getpid())
                process = context.Process(target=_serve, args=args, daemon=True)
                self.processes.append(process)
                try:
                    process.start()
                finally:
                    theirs.close()  # theirs alone: their death reads as the end of our pipe

    def results(self, count: int) -> Iterator[list[bytes | str]]:
        """The results of chunks ``0 .. count-1``, in order. At most ``_AHEAD`` chunks per worker
        are sent ahead of the one to yield next, so results waiting to be yielded stay few."""
        ahead = _AHEAD * len(self.conns)
        busy = dict.fromkeys(self.conns, 0)
        done: dict[int, list[bytes | str]] = {}
        sent = yielded = 0
        while yielded < count:
            for depth in range(_AHEAD):  # chunk 0 to worker 0, 1 to worker 1, ..., then again
                for conn in self.conns:
                    if busy[conn] <= depth and sent < min(count, yielded + ahead):
                        try:
                            conn.send(sent)
                        except OSError:  # it died
                            raise RunFailed(_BROKEN) from None
                        busy[conn] += 1
                        sent += 1
            for conn in wait(self.conns):
                try:
                    index, reply = conn.recv()
                except (EOFError, OSError):  # it died, maybe half-way through an answer
                    raise RunFailed(_BROKEN) from None
                if isinstance(reply, BaseException):
                    raise reply
                busy[conn] -= 1
                done[index] = reply
            while yielded in done:
                yield done.pop(yielded)
                yielded += 1

    def end(self) -> None:
        """Kill every worker, wherever it is, and reap it."""
        with _signals_held():
            for process in self.processes:
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    process.kill()  # AttributeError: not started
            for process in self.processes:
                with contextlib.suppress(OSError, ValueError, AssertionError):
                    process.join(timeout=5)
                    process.close()
            for conn in self.conns:
                conn.close()


def _can_fork() -> bool:
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def _in_processes(
    chunks: list[list[str]], crop: int | None, size: tuple[int, int], workers: int
) -> Iterator[bytes | str]:
    pool = _Workers()
    try:
        pool.start(workers, chunks, crop, size)
        for results in pool.results(len(chunks)):
            yield from results
    finally:
        pool.end()


def _in_threads(
    chunks: list[list[str]], crop: int | None, size: tuple[int, int], workers: int
) -> Iterator[bytes | str]:
    """Threads where fork is not available (spawn would re-import torch in every worker); PIL
    releases the GIL while decoding and resizing. A thread cannot be killed: a stop waits for the
    chunks under way."""
    executor = ThreadPoolExecutor(workers)
    try:
        n = len(chunks)
        for results in executor.map(decode.decode_chunk, chunks, [crop] * n, [size] * n):
            yield from results
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


def decode_all(
    paths: list[str], crop: int | None, size: tuple[int, int], workers: int
) -> Iterator[bytes | str]:
    """:func:`~ae_lab.data.image_cache.decode.try_decode` of every path, in order. Close the
    generator to stop early: its workers are ended then."""
    if workers <= 1 or len(paths) <= workers:
        for path in paths:
            yield decode.try_decode(path, crop, size)
        return
    chunk = max(1, min(64, math.ceil(len(paths) / (4 * workers))))
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    decoding = _in_processes if _can_fork() else _in_threads
    yield from decoding(chunks, crop, size, workers)
