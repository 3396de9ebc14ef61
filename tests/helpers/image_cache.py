"""Helpers for the image cache tests: a build in one call, a slow decode whose workers can be
watched, and builds in forked processes that a test can kill, interrupt or time out.

Plain functions and classes (the fixtures are in ``tests/data/image_cache/conftest.py``).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ae_lab.data.image_cache import LOCK_NAME, Preprocess, decode, get_image_cache

FORK = "fork" in multiprocessing.get_all_start_methods()
needs_fork = pytest.mark.skipif(not FORK, reason="needs the fork start method (Linux)")


def build(folder, cache_dir, crop=None, size=None, workers=1, **kwargs):
    return get_image_cache(
        folder, cache_dir, Preprocess.from_config(crop, size), workers=workers, **kwargs
    )


def array_of(cache) -> np.ndarray:
    return np.asarray(cache.images())


def names_in(cache_dir: Path) -> list[str]:
    """The files in the cache folder, the lock file left out."""
    return sorted(p.name for p in Path(cache_dir).iterdir() if p.name != LOCK_NAME)


def smooth_jpeg(path: Path, seed: int, size: tuple[int, int] = (218, 178)) -> None:
    """Realistic JPEG content: smooth noise at quality 90."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    small = Image.fromarray((rng.random((14, 12, 3)) * 255).astype(np.uint8))
    small.resize((size[1], size[0]), Image.Resampling.BICUBIC).save(path, quality=90)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        return True


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` until it holds; the seconds it took. Fails the test after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - started


class SlowDecode:
    """A stand-in for ``decode.decode_image`` (install it with monkeypatch before forking): it
    notes the pid of each process that decodes, and takes ``seconds`` per image while the gate is
    open, so a build lasts long enough to be killed in the middle."""

    def __init__(self, folder: Path, seconds: float = 0.25) -> None:
        self.real = decode.decode_image
        self.pids_dir = folder / "pids"
        self.pids_dir.mkdir(parents=True)
        self.gate = folder / "slow"
        self.gate.touch()
        self.seconds = seconds

    def __call__(self, path: str, crop: int | None, size: tuple[int, int]) -> np.ndarray:
        (self.pids_dir / str(os.getpid())).touch()
        if self.gate.exists():
            time.sleep(self.seconds)
        return self.real(path, crop, size)

    def pids(self) -> set[int]:
        return {int(p.name) for p in self.pids_dir.iterdir()}

    def wait_for_workers(self, count: int, besides: int | None = None) -> set[int]:
        """The pids of ``count`` processes other than ``besides`` that are decoding."""
        wait_until(lambda: len(self.pids() - {besides}) >= count, 20, f"{count} decode workers")
        return self.pids() - {besides}

    def open_gate(self) -> None:
        self.gate.unlink(missing_ok=True)


def _run(conn, function: Callable, args: tuple, kwargs: dict, own_group: bool) -> None:
    if own_group:
        os.setpgrp()
    try:
        conn.send(("ok", function(*args, **kwargs)))
    except KeyboardInterrupt:
        conn.send(("interrupted", None))
        os._exit(130)  # as the CLI does, without a traceback
    except BaseException as error:  # reported to the test, which fails on it
        conn.send(("error", f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))
    finally:
        conn.close()


class Child:
    """``function(*args, **kwargs)`` in a forked process (its own process group with
    ``own_group``, so a signal can reach it and its workers as Ctrl-C in a terminal does)."""

    def __init__(self, function: Callable, *args: Any, own_group: bool = False, **kwargs: Any):
        context = multiprocessing.get_context("fork")
        self._receive, send = context.Pipe(duplex=False)
        self.process = context.Process(target=_run, args=(send, function, args, kwargs, own_group))
        self.process.start()
        send.close()

    @property
    def pid(self) -> int:
        return self.process.pid

    def result(self, timeout: float) -> tuple[str, Any]:
        """``(status, value)``: ``ok`` and the return value, ``interrupted``, ``error`` and the
        traceback, or ``died`` (no word from it). Fails the test after ``timeout`` seconds."""
        if not self._receive.poll(timeout):
            if self.process.is_alive():
                self.kill()
                pytest.fail(f"the child process did not finish within {timeout} s")
            return "died", self._reap()
        try:
            outcome = self._receive.recv()
        except EOFError:
            outcome = ("died", None)
        self._reap()
        return outcome

    def _reap(self, timeout: float = 10) -> int:
        """Its exit code, once it has ended. (``join`` would also wait for any orphaned worker
        that inherited its sentinel pipe.)"""
        wait_until(lambda: self.process.exitcode is not None, timeout, "the child to end")
        return self.process.exitcode

    def value(self, timeout: float) -> Any:
        status, value = self.result(timeout)
        assert status == "ok", f"{status}: {value}"
        return value

    def kill(self) -> None:
        if self.process.exitcode is None:
            self.process.kill()
        self._reap()


def kill_all(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
