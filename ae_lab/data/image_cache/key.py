"""What a cache is made of, and the name that says so: the image folder's listing, the settings
and :data:`FORMAT_VERSION`, hashed into the cache's key (:class:`Plan`).

The listing is the sorted names, sizes and mtimes of the images directly in the folder: a cache is
reused while nothing in it changed, and rebuilt when a file is added, removed or touched, or a
setting changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ae_lab.data.image_cache.decode import IMAGE_SUFFIXES, Preprocess

# Bump when the pixels a given file and setting produce, or the files of a cache, change.
# 2: manifests carry checksums.
FORMAT_VERSION = 2


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
    """The SHA-256 (hex) of the listing, the settings and :data:`FORMAT_VERSION`."""
    payload = json.dumps(
        {"version": FORMAT_VERSION, "settings": preprocess.settings(), "files": list(files)},
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def cache_stem(name: str, preprocess: Preprocess, key: str) -> str:
    """The name of a cache's files without suffix, e.g. ``celeba-crop148-64x64-<16 hex>``."""
    return f"{name}-{preprocess.tag()}-{key[:16]}"


@dataclass
class Plan:
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
