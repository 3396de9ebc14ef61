"""The cache folder's build lock: one process at a time builds or prunes in a cache folder, and a
process waiting for it never waits forever.

It is a POSIX record lock (``fcntl.lockf``) on ``<cache_dir>/ae_lab_image_cache.lock``. Unlike an
``flock``, a record lock belongs to the process that took it: the decode workers a build forks do
not inherit it, and the kernel drops it the moment that process ends, however it ends (``kill -9``
included). Two properties of record locks are handled here: they do not exclude threads of one
process (an in-process ``threading.Lock`` per lock file does), and a process drops its lock when it
closes *any* descriptor of the file, so the file is opened only by the thread that holds that
in-process lock.

The holder writes who it is into the lock file (pid, host, what it builds), touches the file as
its build makes progress (:meth:`BuildLock.progress`) and empties it when it lets go. A waiter
polls, says once whom it waits for and for how long, takes the lock as soon as it is free (saying
so when the last holder died mid-build; the caller then deletes its temporary files), and gives up
with a :class:`~ae_lab.errors.UserError` after ``wait_s`` seconds in which the holder made no
progress.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ae_lab.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: threads of this process are still excluded
    fcntl = None

log = logging.getLogger(__name__)

LOCK_NAME = "ae_lab_image_cache.lock"
DEFAULT_WAIT_S = 600.0  # data.cache_wait_s: seconds without progress before a waiter gives up
POLL_S = 0.2
_TOUCH_EVERY_S = 1.0

_registry = threading.Lock()
_thread_locks: dict[str, threading.Lock] = {}
_holders_here: dict[str, Holder] = {}  # lock path -> the holder in this process
_progress_here: dict[str, int] = {}  # lock path -> progress count of the holder in this process


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a build lock, as written in the lock file."""

    pid: int | None = None
    host: str = ""
    what: str = ""
    since: float = 0.0

    @classmethod
    def me(cls, what: str) -> Holder:
        return cls(os.getpid(), socket.gethostname(), what, time.time())

    @classmethod
    def parse(cls, data: bytes) -> Holder | None:
        """None for an empty file (nobody); an unknown holder for one that does not parse."""
        if not data.strip():
            return None
        try:
            info = json.loads(data)
            return cls(int(info["pid"]), str(info["host"]), str(info["what"]), float(info["since"]))
        except (ValueError, KeyError, TypeError):
            return cls()

    def dumps(self) -> bytes:
        info = {"pid": self.pid, "host": self.host, "what": self.what, "since": self.since}
        return (json.dumps(info) + "\n").encode()

    @property
    def here(self) -> bool:
        return self.host == socket.gethostname()

    def alive(self) -> bool | None:
        """Whether the process still runs; None when that cannot be known (another host)."""
        if self.pid is None or not self.here:
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def __str__(self) -> str:
        if self.pid is None:
            return "another process"
        where = "" if self.here else f" on {self.host}"
        return f"pid {self.pid}{where}"


def _forget_after_fork() -> None:
    """A forked child holds no record lock (nor the in-process locks its parent's threads held)."""
    global _registry
    _registry = threading.Lock()
    _thread_locks.clear()
    _holders_here.clear()
    _progress_here.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def _thread_lock(path: Path) -> threading.Lock:
    with _registry:
        return _thread_locks.setdefault(str(path), threading.Lock())


class BuildLock:
    """The build lock of one cache folder, for one purpose (``what``: a cache's name, "pruning")."""

    def __init__(self, cache_dir: str | os.PathLike, what: str) -> None:
        self.path = Path(cache_dir).resolve() / LOCK_NAME
        self.what = what
        self.previous: Holder | None = None  # set on taking a lock whose last holder died
        self._fd: int | None = None
        self._pid = os.getpid()
        self._in_process = _thread_lock(self.path)
        self._touched = 0.0

    @property
    def held(self) -> bool:
        return self._fd is not None

    # ---- taking and releasing ------------------------------------------------------------------
    def _attempt(self) -> Holder | None:
        """Take the lock if it is free (None); else who holds it."""
        key = str(self.path)
        if not self._in_process.acquire(blocking=False):
            with _registry:
                return _holders_here.get(key) or Holder(os.getpid(), socket.gethostname())
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)  # not inheritable (PEP 446)
        except BaseException:
            self._in_process.release()
            raise
        try:
            if fcntl is not None:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as error:
                    if error.errno not in (errno.EACCES, errno.EAGAIN):
                        raise
                    holder = Holder.parse(os.pread(fd, 4096, 0)) or Holder()
                    os.close(fd)  # safe: no thread of this process holds the lock
                    self._in_process.release()
                    return holder
            self.previous = Holder.parse(os.pread(fd, 4096, 0))  # not emptied: it died holding it
            me = Holder.me(self.what)
            os.ftruncate(fd, 0)
            os.pwrite(fd, me.dumps(), 0)
        except BaseException:
            os.close(fd)
            self._in_process.release()
            raise
        self._fd, self._pid = fd, os.getpid()
        with _registry:
            _holders_here[key] = me
            _progress_here[key] = 0
        if self.previous is not None:
            log.warning(
                "image cache: %s did not finish %s in %s (killed?); taking over",
                self.previous,
                self.previous.what or "its build",
                self.path.parent,
            )
        return None

    def try_acquire(self) -> bool:
        """Take the lock if it is free right now."""
        return self._attempt() is None

    def acquire(self, wait_s: float = DEFAULT_WAIT_S) -> BuildLock:
        """Take the lock, waiting while its holder makes progress; a UserError after ``wait_s``
        seconds without progress."""
        holder = self._attempt()
        if holder is None:
            return self
        log.info(
            "image cache: waiting for %s to finish %s in %s (giving up after %g s without "
            "progress: data.cache_wait_s)",
            holder,
            holder.what or "its build",
            self.path.parent,
            wait_s,
        )
        seen = self._progress_mark()
        deadline = time.monotonic() + wait_s
        while True:
            time.sleep(max(0.0, min(POLL_S, deadline - time.monotonic())))
            holder = self._attempt()
            if holder is None:
                return self
            mark = self._progress_mark()
            if mark != seen:
                seen, deadline = mark, time.monotonic() + wait_s
            elif time.monotonic() >= deadline:
                raise UserError(self._give_up_message(holder, wait_s))

    def release(self) -> None:
        if self._fd is None or self._pid != os.getpid():  # a forked copy never held it
            return
        fd, self._fd = self._fd, None
        with _registry:
            _holders_here.pop(str(self.path), None)
            _progress_here.pop(str(self.path), None)
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # an empty lock file: nobody is building
        finally:
            os.close(fd)  # drops the record lock
            self._in_process.release()

    def __enter__(self) -> BuildLock:
        if not self.held:
            raise RuntimeError("acquire the lock before entering it")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # ---- progress ------------------------------------------------------------------------------
    def progress(self) -> None:
        """Tell waiters that the build is alive and moving (cheap; call it as often as you like)."""
        now = time.monotonic()
        if self._fd is None or now - self._touched < _TOUCH_EVERY_S:
            return
        self._touched = now
        with _registry:
            _progress_here[str(self.path)] = _progress_here.get(str(self.path), 0) + 1
        with contextlib.suppress(OSError, NotImplementedError):
            os.utime(self._fd)

    def _progress_mark(self) -> tuple:
        try:
            stat = os.stat(self.path)  # a stat opens no descriptor
            on_disk = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except OSError:
            on_disk = None
        with _registry:
            return on_disk, _progress_here.get(str(self.path))

    def _give_up_message(self, holder: Holder, wait_s: float) -> str:
        what = f" ({holder.what})" if holder.what else ""
        if holder.alive() is False:
            action = (
                f"{holder}, which took it, is gone: find the process that holds it with "
                f"`fuser -v {self.path}` and stop it"
            )
        elif holder.pid is not None and holder.here:
            action = f"if it is stuck, stop it (kill {holder.pid}) and run again"
        else:
            action = "if it is stuck, stop it and run again"
        return (
            f"gave up waiting for the image cache build lock {self.path}: {holder}{what} made no "
            f"progress for {wait_s:g} s; {action}, or wait longer with "
            "data.cache_wait_s=SECONDS, or use another data.cache_dir"
        )


@contextlib.contextmanager
def build_lock(cache_dir: Path, what: str, wait_s: float = DEFAULT_WAIT_S) -> Iterator[BuildLock]:
    """Hold the build lock of ``cache_dir`` for the block (see :meth:`BuildLock.acquire`)."""
    with BuildLock(cache_dir, what).acquire(wait_s) as lock:
        yield lock


@contextlib.contextmanager
def build_lock_if_free(cache_dir: Path, what: str) -> Iterator[BuildLock | None]:
    """Hold the build lock for the block if it is free now; None (and nothing held) if not."""
    lock = BuildLock(cache_dir, what)
    if not lock.try_acquire():
        yield None
        return
    with lock:
        yield lock
