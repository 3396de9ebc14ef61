"""The cache's files on disk: how they are written, checked, held while in use and removed.

A cache is two files in the cache folder: ``<stem>.u8``, raw uint8 pixels shaped ``(N, 3, H, W)``,
and ``<stem>.json``, its manifest (the kept files in row order, the skipped ones with the reason,
the shape, the settings and the checksums). The manifest is written last, so it marks a finished
cache. Only files of these kinds are ever written or deleted here.

Writing. Every file is written under a temporary name beside its real one
(``<name>.tmp-<pid>-<8 hex>``), fsynced and ``os.replace``-d into place, then the folder is
fsynced: a build that dies leaves at most temporary files, which the next holder of the build lock
deletes (:func:`remove_temp_files`).

Checking. The manifest keeps two CRC-32s of the array (``zlib.crc32``): of the whole file, computed
while it is written, and of 64 blocks of 64 KiB spread evenly over it (the whole file when it is
smaller). It also keeps the ``(size, mtime, inode)`` the array had when the whole file was last
checked. Opening a cache (:func:`check`) reads the sampled blocks every time (4 MiB) and the whole
file only when its ``(size, mtime, inode)`` changed since, which any write through the file system
does; the new stamp is then recorded so the full check happens once. So a change made by writing to
the file is always found; damage that leaves the mtime alone (a failing disk, a tool that restores
times) is found when it touches a sampled block.

In use. A process that uses a cache holds a shared ``flock`` on its array (:class:`CacheLease`) for
as long as it may read it; views pickled to DataLoader workers take their own when they reopen the
file. :func:`remove_unused` takes an exclusive non-blocking ``flock`` first and removes nothing that
anyone holds.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import mmap
import os
import re
import time
import weakref
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ae_lab import atomic

try:
    import fcntl
except ImportError:  # Windows: no flock; a mapped file cannot be deleted there anyway
    fcntl = None

log = logging.getLogger(__name__)

MANIFEST_FORMAT = "ae_lab.image_cache"
ARRAY_SUFFIX = ".u8"
#: Temporary files of a cache: ``ae_lab.atomic.temp_name``'s, and ``<stem>.u8.tmp-<pid>-<random>``
#: (the names of earlier versions' builds)
TEMP_RE = re.compile(
    r"^(\..+\.(u8|json)\.\d+\.[0-9a-f]{8}\.tmp|.+\.(u8|json)\.tmp-\d+-[0-9a-f]{8})$"
)
SAMPLE_BLOCKS = 64
SAMPLE_BYTES = 1 << 16
_CHUNK = 16 << 20  # bytes per CRC step of a full check


# ---- writing -------------------------------------------------------------------------------------
def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """``data`` as compact JSON in ``path``, whole or not at all (:mod:`ae_lab.atomic`)."""
    atomic.write_text(path, json.dumps(data, separators=(",", ":")))


def remove_temp_files(cache_dir: Path) -> list[Path]:
    """Delete the temporary files of builds that did not finish; only call it while holding the
    build lock (then no build is running). Returns what was deleted."""
    removed = []
    for entry in cache_dir.iterdir():
        if TEMP_RE.match(entry.name) and entry.is_file():
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry)
    return removed


# ---- manifests -----------------------------------------------------------------------------------
def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest at ``path`` if it is one of ours, else None."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        return None
    return data


def array_path(manifest_path: Path, manifest: dict[str, Any]) -> Path | None:
    """The array a manifest names: a plain ``*.u8`` name beside it, or None."""
    name = manifest.get("array")
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(ARRAY_SUFFIX):
        return None
    return manifest_path.with_name(name)


def manifests(cache_dir: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """``(path, manifest)`` of our manifests in ``cache_dir``."""
    for path in sorted(cache_dir.glob("*.json")):
        data = read_manifest(path)
        if data is not None:
            yield path, data


# ---- checksums -----------------------------------------------------------------------------------
class RunningCRC:
    """The CRC-32 of the bytes written so far."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes) -> None:
        self.value = zlib.crc32(data, self.value)


def _sample_blocks(size: int, blocks: int, block_bytes: int) -> list[tuple[int, int]]:
    """``(offset, length)`` of the sampled blocks: evenly spread, the first and last included."""
    if size <= blocks * block_bytes:
        return [(0, size)]
    last = size - block_bytes
    return [(round(i * last / (blocks - 1)), block_bytes) for i in range(blocks)]


def sampled_crc(fd: int, size: int, blocks: int, block_bytes: int) -> int:
    crc = 0
    for offset, length in _sample_blocks(size, blocks, block_bytes):
        crc = zlib.crc32(os.pread(fd, length, offset), crc)
    return crc


def full_crc(fd: int, size: int) -> int:
    if size == 0:
        return 0
    with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mapped:
        with contextlib.suppress(AttributeError, OSError):
            mapped.madvise(mmap.MADV_SEQUENTIAL)
        view = memoryview(mapped)
        try:
            crc = 0
            for start in range(0, size, _CHUNK):
                crc = zlib.crc32(view[start : start + _CHUNK], crc)
            return crc
        finally:
            view.release()


def stamp(stat: os.stat_result) -> dict[str, int]:
    """What changes when a file is written to, replaced or copied."""
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ino": stat.st_ino}


def checksums(fd: int, full: int) -> dict[str, Any]:
    """The manifest's ``checksum`` entry for the array open at ``fd``, whose whole-file CRC-32 is
    ``full`` (computed while writing it)."""
    stat = os.fstat(fd)
    return {
        "algorithm": "crc32",
        "full": full,
        "sampled": sampled_crc(fd, stat.st_size, SAMPLE_BLOCKS, SAMPLE_BYTES),
        "blocks": SAMPLE_BLOCKS,
        "block_bytes": SAMPLE_BYTES,
        "checked": stamp(stat),
    }


def check(fd: int, manifest: dict[str, Any], name: str) -> tuple[str | None, bool]:
    """``(what is wrong or None, whether the whole file was checked now)`` for the array open at
    ``fd`` against its manifest. See the module's notes for what is read when."""
    stat = os.fstat(fd)
    expected = math.prod(manifest["shape"])
    if stat.st_size != expected:
        return f"it holds {stat.st_size} bytes instead of {expected}", False
    checksum = manifest["checksum"]
    blocks, block_bytes = int(checksum["blocks"]), int(checksum["block_bytes"])
    if sampled_crc(fd, stat.st_size, blocks, block_bytes) != checksum["sampled"]:
        return "the checksum of its sampled blocks differs from its manifest's", False
    if stamp(stat) == checksum["checked"]:
        return None, False
    log.info(
        "image cache: checking all of %s (%.2f GB) once, as it changed on disk since it was "
        "last checked...",
        name,
        stat.st_size / 1e9,
    )
    started = time.perf_counter()
    if full_crc(fd, stat.st_size) != checksum["full"]:
        return "its checksum differs from its manifest's", True
    log.info("image cache: %s is intact (checked in %.1f s)", name, time.perf_counter() - started)
    return None, True


# ---- in use --------------------------------------------------------------------------------------
class CacheGone(FileNotFoundError):
    """The cache was removed (or replaced) before this process could hold it."""


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


class CacheLease:
    """A shared ``flock`` on a cache's array: while it is held, nobody removes the cache.

    Held until :meth:`close`, or until the lease is garbage (every view of the cache keeps a
    reference). ``file`` is the array, opened for reading: map it rather than the path, so the
    pixels read are those of the file that is held. Raises :class:`CacheGone` when the file is
    missing, being removed, or no longer under its name.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            self.file = open(self.path, "rb")  # noqa: SIM115 -- closed by close() or the finalizer
        except FileNotFoundError:
            raise CacheGone(f"the image cache {self.path} is gone") from None
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(self.file, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise CacheGone(f"the image cache {self.path} is being removed") from None
            if not _same_file(self.file.fileno(), self.path):
                raise CacheGone(f"the image cache {self.path} was removed or replaced")
        except BaseException:
            self.file.close()
            raise
        self._finalizer = weakref.finalize(self, self.file.close)

    @property
    def fd(self) -> int:
        return self.file.fileno()

    def close(self) -> None:
        self._finalizer()

    def __repr__(self) -> str:
        return f"CacheLease({str(self.path)!r}, held={self._finalizer.alive})"


def remove_unused(manifest_path: Path, array: Path | None, dry_run: bool = False) -> bool:
    """Remove a cache (its manifest, then its array) unless a process holds it. True when it was
    removed (or, with ``dry_run``, could be); False when it is in use. Call it while holding the
    build lock, so no build is writing the same names."""
    if array is None or not array.exists():
        if not dry_run:
            manifest_path.unlink(missing_ok=True)
        return True
    with open(array, "rb") as held:
        if fcntl is not None:
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
        if not dry_run:
            manifest_path.unlink(missing_ok=True)  # first: an array without manifest is not used
            if _same_file(held.fileno(), array):
                try:
                    array.unlink()
                except PermissionError:  # Windows: mapped by someone (no flock there)
                    return False
    return True
