"""Files that are either whole or absent: nothing is ever half-written under its real name.

Each writer writes to a temporary name in the target's own folder (so the rename cannot cross file
systems), flushes and ``fsync``\\ s it, then ``os.replace``\\ s it over the real name, which POSIX
makes atomic: a reader sees the old file or the new one, never a mix. A failed write (a full disk,
an exception, Ctrl-C) deletes its temporary file and leaves the old file untouched. Only a kill
that gives no chance to clean up (``kill -9``, a power cut) can leave a ``.<name>.*.tmp`` file
behind, beside an intact real file.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO

TEMP_SUFFIX = ".tmp"
#: The names :func:`temp_name` makes: ``.<name>.<pid>.<8 hex>.tmp`` (group 1: ``<name>``).
TEMP_PATTERN = re.compile(r"^\.(.+)\.\d+\.[0-9a-f]{8}\.tmp$")


def temp_name(path: Path) -> Path:
    """A fresh hidden name beside ``path``: ``.<name>.<pid>.<random>.tmp``."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the platform allows opening a folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file to write ``path`` through; on success it replaces ``path``.

    ``mode`` is ``"wb"`` or ``"w"`` (text, UTF-8). The new file gets the permissions a plain
    ``open(path, "w")`` would give (0666 less the umask).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_name(path)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        _discard(temp)
        raise
    _put_in_place(temp, path)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """``Path(path).write_bytes(data)``, atomically."""
    with atomic_write(path, "wb") as file:
        file.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """``Path(path).write_text(text)`` (UTF-8), atomically."""
    with atomic_write(path, "w") as file:
        file.write(text)


def _put_in_place(temp: Path, path: Path) -> None:
    """Rename the finished ``temp`` to ``path`` (replacing it) and make the rename durable; the
    temporary name is removed if the rename fails."""
    try:
        os.replace(temp, path)
    except BaseException:
        _discard(temp)
        raise
    fsync_folder(path.parent)


def _discard(temp: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)


def copy_file(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Copy ``source``'s bytes to ``target``, atomically (``target`` is whole or untouched)."""
    with open(source, "rb") as src, atomic_write(target, "wb") as dst:
        shutil.copyfileobj(src, dst, length=1 << 20)
