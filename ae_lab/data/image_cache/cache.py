"""The cache of an image folder, reused when current and intact, else built:
:func:`get_image_cache`, and the :class:`ImageCache` it returns.

Builds run under the cache folder's build lock (:mod:`~ae_lab.data.image_cache.lock`): one process
builds, the others wait (boundedly) and then reuse its cache. The process holds the cache it gets
(a lease) for as long as it keeps the returned :class:`ImageCache` or a view of it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ae_lab.data.image_cache import store
from ae_lab.data.image_cache.build import build_cache
from ae_lab.data.image_cache.decode import IMAGE_SUFFIXES, Preprocess
from ae_lab.data.image_cache.key import Plan, scan_images
from ae_lab.data.image_cache.lock import DEFAULT_WAIT_S, build_lock
from ae_lab.data.image_cache.mapped import MappedImages
from ae_lab.data.image_cache.reuse import (
    Opened,
    open_cache,
    remove_superseded,
    report_damage,
    restamp,
    tidy,
)
from ae_lab.data.image_cache.store import CacheLease
from ae_lab.errors import RunFailed, UserError

log = logging.getLogger(__name__)


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
    plan = Plan(folder, files, tuple(suffixes), preprocess, name, cache_dir)
    key, stem, manifest_path = plan.key, plan.stem, plan.manifest_path

    found = open_cache(manifest_path, key)
    built = False
    if isinstance(found, Opened):
        tidy(cache_dir, manifest_path, found, stem)
        log.info(
            "image cache: %d images %s from %s",
            found.manifest["shape"][0],
            "x".join(map(str, found.manifest["shape"][1:])),
            found.lease.path,
        )
    else:
        known_bad = report_damage(found, stem, None)
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            with build_lock(cache_dir, f"building {stem}", wait_s) as lock:
                found = open_cache(manifest_path, key, known_bad)  # maybe built meanwhile
                report_damage(found, stem, known_bad)
                if isinstance(found, Opened):
                    if found.restamp:
                        restamp(manifest_path, found)
                else:
                    removed = store.remove_temp_files(cache_dir)
                    if removed:
                        log.info(
                            "image cache: removed %d temporary file(s) of unfinished builds",
                            len(removed),
                        )
                    build_cache(plan, workers, lock)
                    found = open_cache(manifest_path, key)
                    if not isinstance(found, Opened):
                        raise RunFailed(
                            f"image cache: {manifest_path.with_suffix('.u8')} does not check out "
                            "right after it was built (a failing disk?); try another "
                            "data.cache_dir"
                        )
                    built = True
                remove_superseded(cache_dir, manifest_path, found.manifest, stem)
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
