"""The decode workers of a build: :func:`decode_all` decodes every file, in order, in forked
processes (threads where fork is not available).

A worker never outlives the build: the kernel kills it when the builder's thread ends
(``PR_SET_PDEATHSIG``, so ``kill -9`` of the builder takes its workers along), it ignores Ctrl-C
(the terminal sends it to the whole process group; the builder handles it), and a build that stops
early (Ctrl-C, an error) kills the running workers instead of waiting for their chunks. Workers
hold no lock: the build lock is a record lock, which a forked child does not inherit.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from ae_lab.data.image_cache import decode
from ae_lab.errors import RunFailed

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


# ---- the decode workers --------------------------------------------------------------------------
def die_with_parent() -> None:
    """Ask the kernel to kill this process when the thread that forked it ends (Linux): the
    builder's thread, which lives until the pool is shut down."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _start_worker(parent: int) -> None:
    """Initializer of a decode worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the builder
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # stops us; no handler inherited from it
    die_with_parent()
    if os.getppid() != parent:  # the builder died before we asked
        os._exit(1)


def _executor(workers: int) -> Executor:
    """Forked processes where fork is safe and cheap (Linux); threads elsewhere (PIL releases
    the GIL while decoding and resizing), to avoid spawn re-importing torch in every worker."""
    if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
        return ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_start_worker,
            initargs=(os.getpid(),),
        )
    return ThreadPoolExecutor(workers)


def _stop_now(executor: Executor) -> None:
    """Cancel the queued chunks and end the workers without waiting for the running ones."""
    workers = []
    if isinstance(executor, ProcessPoolExecutor):
        # The pool's own list (3.8-3.13; 3.14 has terminate_workers()): shutdown forgets it.
        workers = list((executor._processes or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        with contextlib.suppress(OSError, ValueError):
            worker.kill()
    for worker in workers:
        with contextlib.suppress(OSError, ValueError, AssertionError):
            worker.join(timeout=5)


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
    executor = _executor(workers)
    finished = False
    try:
        for results in executor.map(
            decode.decode_chunk, chunks, [crop] * len(chunks), [size] * len(chunks)
        ):
            yield from results
        finished = True
    except BrokenProcessPool:
        raise RunFailed(
            "image cache: a decode worker ended unexpectedly (killed, or out of memory?); "
            "nothing was kept. Run again, or with data.cache_workers=1"
        ) from None
    finally:
        if finished:
            executor.shutdown(wait=True)
        else:
            _stop_now(executor)
