"""A folder of images as a DataModule, decoded once into a memory-mapped uint8 cache.

``prepare_data`` finds the image folder and builds (or reuses) its cache
(:mod:`ae_lab.data.image_cache`); ``load_splits`` returns the splits as views of that one array
(:class:`~ae_lab.data.image_cache.MappedImages`), so a batch costs one fancy-index of a memory map.
The DataModule holds the cache while it lives, so no other run removes it. Images have no labels.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ae_lab.data.arrays import seeded_split
from ae_lab.data.base import ImageArrayDataModule, Split
from ae_lab.data.image_cache import (
    DEFAULT_WAIT_S,
    IMAGE_SUFFIXES,
    ImageCache,
    Preprocess,
    get_image_cache,
    has_images,
)
from ae_lab.errors import UserError


class ImageFolderDataModule(ImageArrayDataModule):
    """The images directly in a folder (``root``), preprocessed once into a memory-mapped cache;
    a seeded split by ``val_fraction`` and ``test_fraction``. Subclasses look for their dataset's
    layouts (:meth:`image_folder`) and official splits (:meth:`split_rows`).

    Args (beyond :class:`~ae_lab.data.base.ImageArrayDataModule`'s):
    test_fraction: share of the images held out for testing, when there is no official split
        (``val_fraction`` is then a share of all images too).
    crop: side of a centred square crop (in source pixels) before resizing; None for none.
    size: output size: None (keep), an int (a square) or ``[height, width]``.
    cache_dir: where the decoded arrays live (never inside the dataset folder).
    cache_workers: processes decoding the images on the first run; None for min(8, CPUs).
    cache_wait_s: while another process builds in ``cache_dir``, seconds to wait without seeing
        it progress before giving up with an error.
    download: fetch the dataset when it is missing, where a download exists.
    """

    cache_name = "images"  # prefix of the cache files

    def __init__(
        self,
        *args: Any,
        test_fraction: float = 0.1,
        crop: int | None = None,
        size: Any = 64,
        cache_dir: str = "data/cache",
        cache_workers: int | None = None,
        cache_wait_s: float = DEFAULT_WAIT_S,
        download: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.download = bool(download)
        self.test_fraction = float(test_fraction)
        self.preprocess = Preprocess.from_config(crop, size)
        self.cache_dir = str(cache_dir)
        self.cache_workers = None if cache_workers is None else int(cache_workers)
        self.cache_wait_s = _wait_seconds(cache_wait_s)
        if self.val_fraction < 0 or self.test_fraction < 0:
            raise UserError("data.val_fraction and data.test_fraction must be >= 0")
        if self.val_fraction + self.test_fraction >= 1:
            raise UserError(
                f"data.val_fraction + data.test_fraction must be below 1, got "
                f"{self.val_fraction} + {self.test_fraction}"
            )
        self.cache: ImageCache | None = None

    # ---- for subclasses ------------------------------------------------------------------------
    def image_folder(self) -> Path | None:
        """The folder holding the images, or None when none of the accepted layouts is there."""
        return self.root_path if has_images(self.root_path) else None

    def missing_message(self) -> str:
        return (
            f"no images ({', '.join(IMAGE_SUFFIXES)}) in {self.root_path}; set data.root to "
            "the folder that holds them"
        )

    def fetch(self) -> None:
        """Download the dataset into ``root`` when ``download`` is set; nothing by default."""

    # ---- shared --------------------------------------------------------------------------------
    @property
    def root_path(self) -> Path:
        return Path(self.root).expanduser()

    def prepare_data(self) -> None:
        self.load_cache()

    def load_cache(self) -> ImageCache:
        """Find the images and build or reuse their cache (once per DataModule)."""
        if self.cache is None:
            folder = self.image_folder()
            if folder is None:
                self.fetch()
                folder = self.image_folder()
            if folder is None:
                raise UserError(self.missing_message())
            self.cache = get_image_cache(
                folder,
                self.cache_dir,
                self.preprocess,
                name=self.cache_name,
                workers=self.cache_workers,
                wait_s=self.cache_wait_s,
            )
        return self.cache

    def fraction_split(self, n: int) -> dict[str, np.ndarray]:
        """Rows of a seeded ``train/val/test`` split of ``n`` images, each part sorted."""
        fractions = [1 - self.val_fraction - self.test_fraction, self.val_fraction]
        fractions.append(self.test_fraction)
        parts = seeded_split(n, fractions, self.seed)
        names = ("train", "val", "test")
        return {name: np.sort(part.numpy()) for name, part in zip(names, parts, strict=True)}

    def split_rows(self, cache: ImageCache) -> dict[str, np.ndarray]:
        return self.fraction_split(cache.shape[0])

    def load_splits(self) -> dict[str, Split]:
        cache = self.load_cache()
        rows = self.split_rows(cache)
        return {name: (cache.images(rows[name]), None) for name in ("train", "val", "test")}


def _wait_seconds(value: Any) -> float:
    """``data.cache_wait_s``: a number of seconds >= 0 (never None: no wait is endless)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not seconds >= 0 or math.isinf(seconds):
        raise UserError(
            f"data.cache_wait_s must be a number of seconds >= 0, got {value!r} (it bounds the "
            f"wait for another process building the image cache; default {DEFAULT_WAIT_S:g})"
        )
    return seconds
