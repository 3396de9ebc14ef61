"""Finding, building and opening the cache of an image folder: :func:`get_image_cache`.

The key hashes the folder's listing (sorted names, sizes and mtimes), the preprocessing settings
and :data:`FORMAT_VERSION`: a cache is reused while nothing changed and rebuilt when a file is
added, removed or touched, or a setting changes. A cache is opened only after its checksums pass
(:func:`~ae_lab.data.image_cache.store.check`); one that fails is named in one log line and
rebuilt. The process then holds it (a lease) for as long as it keeps the returned
:class:`ImageCache` or a view of it.

Builds run under the cache folder's build lock (:mod:`~ae_lab.data.image_cache.lock`): one
process builds, the others wait (boundedly) and reuse. The decoding runs in workers that never
outlive the build (:mod:`~ae_lab.data.image_cache.workers`). A build that stops (Ctrl-C, an
error) removes its temporary file and stops its workers before the exception goes on; one that is
killed leaves a temporary file that the next holder of the lock deletes. After a build, and on reuse when the lock is free, caches that
this one supersedes (same folder, name and settings, another listing) are removed unless another
process holds them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ae_lab.data.image_cache import decode, store
from ae_lab.data.image_cache.decode import IMAGE_SUFFIXES, Preprocess
from ae_lab.data.image_cache.lock import DEFAULT_WAIT_S, BuildLock, build_lock, build_lock_if_free
from ae_lab.data.image_cache.mapped import MappedImages
from ae_lab.data.image_cache.store import CacheGone, CacheLease
from ae_lab.data.image_cache.workers import decode_all, default_workers
from ae_lab.errors import RunFailed, UserError

log = logging.getLogger(__name__)

# Bump when the pixels a given file and setting produce, or the files of a cache, change.
# 2: manifests carry checksums.
FORMAT_VERSION = 2
PRUNE_COMMAND = "python -m ae_lab.data.image_cache.prune"
_SHOWN_SKIPPED = 5  # names in the one-line summary of skipped files
_CHECKSUM_KEYS = {"full", "sampled", "blocks", "block_bytes", "checked"}


@dataclass
class ImageCache:
    """A finished cache: the array file, its shape and the source file of every row. This
    process holds the cache (``lease``) while this object or a view from :meth:`images` lives."""

    array_path: Path
    manifest_path: Path
    shape: tuple[int, int, int, int]
    files: list[str]  # row i holds files[i] (relative to source)
    skipped: list[tuple[str, str]]  # (file, reason) of the files left out
    source: Path
    built: bool = False  # built by this call (else reused)
    lease: CacheLease | None = field(default=None, repr=False)
    _rows: dict[str, int] | None = field(default=None, repr=False)

    def images(self, index: np.ndarray | Sequence[int] | None = None) -> MappedImages:
        """The whole array, or the rows in ``index``, memory-mapped."""
        return MappedImages(self.array_path, self.shape, index, lease=self.lease)

    def rows_of(self, names: Sequence[str]) -> np.ndarray:
        """Row numbers of the named files, in the given order; names not in the cache are dropped."""
        if self._rows is None:
            self._rows = {name: row for row, name in enumerate(self.files)}
        rows = (self._rows.get(name) for name in names)
        return np.fromiter((r for r in rows if r is not None), dtype=np.int64)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["lease"] = None  # a descriptor means nothing elsewhere; views take their own
        state["_rows"] = None
        return state


# ---- scanning and keys ---------------------------------------------------------------------------
def scan_images(
    folder: str | os.PathLike, suffixes: Sequence[str] = IMAGE_SUFFIXES
) -> list[tuple[str, int, int]]:
    """``(name, size, mtime_ns)`` of the image files directly in ``folder``, sorted by name.

    Hidden files and sub-folders are ignored; suffixes match case-insensitively.
    """
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith(".") or not name.lower().endswith(tuple(suffixes)):
                continue
            try:
                if not entry.is_file():
                    continue
                stat = entry.stat()
            except OSError:
                continue  # vanished or unreadable: not part of the listing
            found.append((name, stat.st_size, stat.st_mtime_ns))
    found.sort()
    return found


def has_images(folder: str | os.PathLike, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> bool:
    """Whether ``folder`` is a folder that holds at least one image file (stops at the first)."""
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name.lower()
                if not name.startswith(".") and name.endswith(tuple(suffixes)):
                    with contextlib.suppress(OSError):
                        if entry.is_file():
                            return True
    except OSError:
        return False
    return False


def cache_key(files: Sequence[tuple[str, int, int]], preprocess: Preprocess) -> str:
    payload = json.dumps(
        {"version": FORMAT_VERSION, "settings": preprocess.settings(), "files": list(files)},
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def cache_stem(name: str, preprocess: Preprocess, key: str) -> str:
    """The name of a cache's files without suffix, e.g. ``celeba-crop148-64x64-<16 hex>``."""
    return f"{name}-{preprocess.tag()}-{key[:16]}"


# ---- opening a cache -----------------------------------------------------------------------------
@dataclass
class _Plan:
    """What a cache is made of: the folder's listing, the settings, and the names they give."""

    folder: Path
    files: list[tuple[str, int, int]]
    suffixes: tuple[str, ...]
    preprocess: Preprocess
    name: str
    cache_dir: Path

    @cached_property
    def key(self) -> str:
        return cache_key(self.files, self.preprocess)

    @cached_property
    def stem(self) -> str:
        return cache_stem(self.name, self.preprocess, self.key)

    @property
    def manifest_path(self) -> Path:
        return self.cache_dir / f"{self.stem}.json"


@dataclass
class _Opened:
    manifest: dict[str, Any]
    lease: CacheLease
    restamp: bool  # the whole file was checked now: record it, so it is not checked again


@dataclass
class _Damaged:
    stamp: dict[str, int]
    problem: str


def _open_cache(
    manifest_path: Path, key: str, known_bad: dict[str, int] | None = None
) -> _Opened | _Damaged | None:
    """The finished cache with this key, held and checked; :class:`_Damaged` when its manifest or
    array fails its checks (or is the array already found damaged); None when there is none."""
    if not manifest_path.exists():
        return None
    data = store.read_manifest(manifest_path)
    try:
        if data is None or data.get("version") != FORMAT_VERSION or data.get("key") != key:
            raise ValueError("another cache's")
        shape = tuple(int(s) for s in data["shape"])
        array = store.array_path(manifest_path, data)
        if array is None or len(shape) != 4 or len(data["files"]) != shape[0]:
            raise ValueError("inconsistent")
        if not set(data["checksum"]) >= _CHECKSUM_KEYS:
            raise ValueError("without checksums")
    except (KeyError, TypeError, ValueError):
        return _Damaged({}, "its manifest cannot be read or does not fit")
    try:
        lease = CacheLease(array)
    except CacheGone:
        return None
    try:
        current = store.stamp(os.fstat(lease.fd))
        if known_bad is not None and current == known_bad:
            lease.close()
            return _Damaged(current, "")
        problem, checked_all = store.check(lease.fd, data, array.name)
    except BaseException:
        lease.close()
        raise
    if problem is not None:
        lease.close()
        return _Damaged(current, problem)
    return _Opened(data, lease, checked_all)


def _restamp(manifest_path: Path, opened: _Opened) -> None:
    """Record that the whole array was checked as it is now (hold the build lock)."""
    on_disk = store.read_manifest(manifest_path)
    if on_disk is None or on_disk.get("key") != opened.manifest["key"]:
        return
    on_disk["checksum"]["checked"] = store.stamp(os.fstat(opened.lease.fd))
    store.write_json_atomic(manifest_path, on_disk)


def _remove_superseded(cache_dir: Path, keep: Path, manifest: dict[str, Any], stem: str) -> None:
    """Remove the caches of the same source, name and settings that ``keep`` replaces, unless
    another process holds them (hold the build lock)."""
    prefix = stem[: -len(manifest["key"][:16])]
    for other in sorted(cache_dir.glob(f"{prefix}*.json")):
        data = None if other == keep else store.read_manifest(other)
        if data is None or any(data.get(k) != manifest[k] for k in ("source", "name", "settings")):
            continue
        array = store.array_path(other, data)
        if store.remove_unused(other, array):
            log.info("image cache: removed %s, superseded by %s", other.stem, keep.stem)
        else:
            log.info(
                "image cache: kept %s, superseded but in use by another process; it is removed "
                "when it is not (or with: %s %s)",
                other.stem,
                PRUNE_COMMAND,
                cache_dir,
            )


def _tidy(cache_dir: Path, manifest_path: Path, opened: _Opened, stem: str) -> None:
    """On reuse, when the build lock is free: remove what killed builds left and superseded
    caches nobody holds; record a full check."""
    try:
        with build_lock_if_free(cache_dir, f"tidying after {stem}") as lock:
            if lock is None:
                return
            store.remove_temp_files(cache_dir)  # of builds that were killed: none runs now
            if opened.restamp:
                _restamp(manifest_path, opened)
            _remove_superseded(cache_dir, manifest_path, opened.manifest, stem)
    except OSError as error:  # a read-only cache folder: nothing to tidy
        log.debug("image cache: not tidying %s (%s)", cache_dir, error)


# ---- the entry point -----------------------------------------------------------------------------
def get_image_cache(
    folder: str | os.PathLike,
    cache_dir: str | os.PathLike,
    preprocess: Preprocess,
    *,
    name: str = "images",
    workers: int | None = None,
    suffixes: Sequence[str] = IMAGE_SUFFIXES,
    wait_s: float = DEFAULT_WAIT_S,
) -> ImageCache:
    """The cache of the images directly in ``folder``, reused when current and intact, else built.

    ``wait_s``: while another process builds in ``cache_dir``, how long to wait for it without
    seeing progress before giving up. Raises :class:`UserError` when the folder is missing or holds
    no usable image, the cache folder cannot be written, or the wait runs out.
    """
    folder = Path(folder).expanduser().resolve()
    cache_dir = Path(cache_dir).expanduser().resolve()
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder")
    files = scan_images(folder, suffixes)
    if not files:
        raise UserError(f"no image files ({', '.join(suffixes)}) in {folder}")
    plan = _Plan(folder, files, tuple(suffixes), preprocess, name, cache_dir)
    key, stem, manifest_path = plan.key, plan.stem, plan.manifest_path

    found = _open_cache(manifest_path, key)
    built = False
    if isinstance(found, _Opened):
        _tidy(cache_dir, manifest_path, found, stem)
        log.info(
            "image cache: %d images %s from %s",
            found.manifest["shape"][0],
            "x".join(map(str, found.manifest["shape"][1:])),
            found.lease.path,
        )
    else:
        known_bad = _report_damage(found, stem, None)
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            with build_lock(cache_dir, f"building {stem}", wait_s) as lock:
                found = _open_cache(manifest_path, key, known_bad)  # maybe built meanwhile
                _report_damage(found, stem, known_bad)
                if isinstance(found, _Opened):
                    if found.restamp:
                        _restamp(manifest_path, found)
                else:
                    removed = store.remove_temp_files(cache_dir)
                    if removed:
                        log.info(
                            "image cache: removed %d temporary file(s) of unfinished builds",
                            len(removed),
                        )
                    _build(plan, workers, lock)
                    found = _open_cache(manifest_path, key)
                    if not isinstance(found, _Opened):
                        raise RunFailed(
                            f"image cache: {manifest_path.with_suffix('.u8')} does not check out "
                            "right after it was built (a failing disk?); try another "
                            "data.cache_dir"
                        )
                    built = True
                _remove_superseded(cache_dir, manifest_path, found.manifest, stem)
        except OSError as error:
            raise UserError(
                f"cannot write the image cache in {cache_dir} ({error.strerror or error}); "
                "set data.cache_dir=DIR to a writable folder with room for it"
            ) from None
    manifest = found.manifest
    return ImageCache(
        array_path=found.lease.path,
        manifest_path=manifest_path,
        shape=tuple(manifest["shape"]),
        files=list(manifest["files"]),
        skipped=[tuple(s) for s in manifest["skipped"]],
        source=folder,
        built=built,
        lease=found.lease,
    )


def _report_damage(
    found: _Opened | _Damaged | None, stem: str, known_bad: dict[str, int] | None
) -> dict[str, int] | None:
    """Log a damaged cache once; the stamp of the damaged array (or ``known_bad``)."""
    if not isinstance(found, _Damaged):
        return known_bad
    if found.stamp != known_bad:
        log.warning("image cache: %s is damaged (%s); rebuilding it", stem, found.problem)
    return found.stamp


def _summarise_skipped(folder: Path, skipped: list[tuple[str, str]], total: int) -> None:
    shown = ", ".join(f"{name} ({reason})" for name, reason in skipped[:_SHOWN_SKIPPED])
    more = f" and {len(skipped) - _SHOWN_SKIPPED} more" if len(skipped) > _SHOWN_SKIPPED else ""
    log.warning(
        "image cache: skipped %d of %d files in %s that are not usable images: %s%s",
        len(skipped),
        total,
        folder,
        shown,
        more,
    )


def _build(plan: _Plan, workers: int | None, lock: BuildLock) -> dict[str, Any]:
    """Decode every file into ``<stem>.u8`` and write its manifest (hold the build lock)."""
    folder, files, preprocess = plan.folder, plan.files, plan.preprocess
    workers = default_workers() if workers is None else max(1, int(workers))
    manifest_path = plan.manifest_path
    array_path = manifest_path.with_suffix(store.ARRAY_SUFFIX)
    manifest_path.unlink(missing_ok=True)  # a manifest from before is not valid for the new array
    paths = [str(folder / file) for file, _, _ in files]
    size = preprocess.fixed_shape() or decode.first_size(paths)
    if size is None:
        raise UserError(f"no readable image in {folder} ({len(files)} files tried)")
    log.info(
        "image cache: decoding %d images from %s to %dx%d%s (once; %d worker%s)...",
        len(files),
        folder,
        size[0],
        size[1],
        f" after a centred {preprocess.crop}x{preprocess.crop} crop" if preprocess.crop else "",
        workers,
        "s" if workers > 1 else "",
    )
    started = time.perf_counter()
    temp = array_path.with_name(store.temp_name(array_path.name))
    kept: list[str] = []
    skipped: list[tuple[str, str]] = []
    crc = store.RunningCRC()
    try:
        with (
            open(temp, "w+b") as out,  # read back for the sampled checksum
            contextlib.closing(decode_all(paths, preprocess.crop, size, workers)) as results,
        ):
            for (file, _, _), result in zip(files, results, strict=True):
                if isinstance(result, str):
                    skipped.append((file, result))
                else:
                    out.write(result)
                    crc.update(result)
                    kept.append(file)
                lock.progress()
            out.flush()
            os.fsync(out.fileno())
            checksum = store.checksums(out.fileno(), crc.value)
        if skipped:
            _summarise_skipped(folder, skipped, len(files))
        if not kept:
            raise UserError(
                f"no usable images in {folder}: all {len(files)} files were skipped "
                f"(e.g. {skipped[0][0]}: {skipped[0][1]})"
            )
        os.replace(temp, array_path)
    finally:
        temp.unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    manifest = {
        "format": store.MANIFEST_FORMAT,
        "version": FORMAT_VERSION,
        "key": plan.key,
        "name": plan.name,
        "source": str(folder),
        "suffixes": list(plan.suffixes),
        "settings": preprocess.settings(),
        "array": array_path.name,
        "dtype": "uint8",
        "shape": [len(kept), 3, size[0], size[1]],
        "checksum": checksum,
        "files": kept,
        "skipped": skipped,
        "seconds": round(seconds, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    store.write_json_atomic(manifest_path, manifest)  # last: its presence marks a finished cache
    store.fsync_dir(manifest_path.parent)
    log.info(
        "image cache: %d images in %.1f s (%d skipped) -> %s (%.1f MB)",
        len(kept),
        seconds,
        len(skipped),
        array_path,
        array_path.stat().st_size / 1e6,
    )
    return manifest
