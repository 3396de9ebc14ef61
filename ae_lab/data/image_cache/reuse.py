"""The finished caches in a cache folder: opening one checked and held (:func:`open_cache`), and
removing the ones it supersedes.

A cache is opened only after its checksums pass (:func:`~ae_lab.data.image_cache.store.check`); one
that fails is named in one log line and rebuilt. Superseded caches (same folder, name and settings,
another listing) go after a build, and on reuse when the build lock is free, unless another process
holds them. Everything that writes here holds the build lock.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ae_lab.data.image_cache import store
from ae_lab.data.image_cache.key import FORMAT_VERSION
from ae_lab.data.image_cache.lock import build_lock_if_free
from ae_lab.data.image_cache.store import CacheGone, CacheLease

log = logging.getLogger(__name__)

PRUNE_COMMAND = "python -m ae_lab.data.image_cache.prune"
_CHECKSUM_KEYS = {"full", "sampled", "blocks", "block_bytes", "checked"}


@dataclass
class Opened:
    """A finished cache, held (``lease``) and checked."""

    manifest: dict[str, Any]
    lease: CacheLease
    restamp: bool  # the whole file was checked now: record it, so it is not checked again


@dataclass
class Damaged:
    """A cache whose manifest or array fails its checks."""

    stamp: dict[str, int]
    problem: str


def open_cache(
    manifest_path: Path, key: str, known_bad: dict[str, int] | None = None
) -> Opened | Damaged | None:
    """The finished cache with this key, held and checked; :class:`Damaged` when its manifest or
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
        return Damaged({}, "its manifest cannot be read or does not fit")
    try:
        lease = CacheLease(array)
    except CacheGone:
        return None
    try:
        current = store.stamp(os.fstat(lease.fd))
        if known_bad is not None and current == known_bad:
            lease.close()
            return Damaged(current, "")
        problem, checked_all = store.check(lease.fd, data, array.name)
    except BaseException:
        lease.close()
        raise
    if problem is not None:
        lease.close()
        return Damaged(current, problem)
    return Opened(data, lease, checked_all)


def report_damage(
    found: Opened | Damaged | None, stem: str, known_bad: dict[str, int] | None
) -> dict[str, int] | None:
    """Log a damaged cache once; the stamp of the damaged array (or ``known_bad``)."""
    if not isinstance(found, Damaged):
        return known_bad
    if found.stamp != known_bad:
        log.warning("image cache: %s is damaged (%s); rebuilding it", stem, found.problem)
    return found.stamp


def restamp(manifest_path: Path, opened: Opened) -> None:
    """Record that the whole array was checked as it is now (hold the build lock)."""
    on_disk = store.read_manifest(manifest_path)
    if on_disk is None or on_disk.get("key") != opened.manifest["key"]:
        return
    on_disk["checksum"]["checked"] = store.stamp(os.fstat(opened.lease.fd))
    store.write_json_atomic(manifest_path, on_disk)


def remove_superseded(cache_dir: Path, keep: Path, manifest: dict[str, Any], stem: str) -> None:
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


def tidy(cache_dir: Path, manifest_path: Path, opened: Opened, stem: str) -> None:
    """On reuse, when the build lock is free: remove what killed builds left and superseded
    caches nobody holds; record a full check."""
    try:
        with build_lock_if_free(cache_dir, f"tidying after {stem}") as lock:
            if lock is None:
                return
            store.remove_temp_files(cache_dir)  # of builds that were killed: none runs now
            if opened.restamp:
                restamp(manifest_path, opened)
            remove_superseded(cache_dir, manifest_path, opened.manifest, stem)
    except OSError as error:  # a read-only cache folder: nothing to tidy
        log.debug("image cache: not tidying %s (%s)", cache_dir, error)
