"""Decode a folder of images once into one uint8 array on disk, then batch by indexing it.

Decoding and resizing a JPEG costs far more than a small VAE's training step at 64x64, so an image
folder is decoded, cropped and resized once, into ``<cache_dir>/<name>-<settings>-<key>.u8``: raw
uint8 pixels shaped ``(N, 3, H, W)``, memory-mapped afterwards, beside its manifest
``<same stem>.json``. The parts:

- :mod:`.decode`: one file to pixels (:class:`Preprocess`: crop, size; EXIF, RGB; skip reasons).
- :mod:`.store`: the files on disk: atomic writes, manifests, checksums, holding a cache while it
  is in use (:class:`CacheLease`) and removing only what nobody holds.
- :mod:`.lock`: the cache folder's build lock, which decode workers never hold and nobody waits
  for forever.
- :mod:`.mapped`: :class:`MappedImages`, the memory-mapped array the DataModules index.
- :mod:`.key`: what a cache is made of (the folder's listing, the settings) and its key.
- :mod:`.reuse`: the finished caches: opened checked and held, superseded ones removed.
- :mod:`.workers`: the decode workers of a build, which never outlive it.
- :mod:`.build`: one build: decode every image into the array, then write its manifest.
- :mod:`.cache`: :func:`get_image_cache`: reuse when current and intact, else build, under the lock.
- :mod:`.prune`: ``python -m ae_lab.data.image_cache.prune [CACHE_DIR]`` removes caches that are
  out of date and not in use.
"""

from ae_lab.data.image_cache.cache import ImageCache, get_image_cache
from ae_lab.data.image_cache.decode import IMAGE_SUFFIXES, Preprocess, parse_crop, parse_size
from ae_lab.data.image_cache.key import (
    FORMAT_VERSION,
    cache_key,
    cache_stem,
    has_images,
    scan_images,
)
from ae_lab.data.image_cache.lock import DEFAULT_WAIT_S, LOCK_NAME, BuildLock
from ae_lab.data.image_cache.mapped import MappedImages
from ae_lab.data.image_cache.reuse import PRUNE_COMMAND
from ae_lab.data.image_cache.store import CacheGone, CacheLease
from ae_lab.data.image_cache.workers import default_workers

__all__ = [
    "DEFAULT_WAIT_S",
    "FORMAT_VERSION",
    "IMAGE_SUFFIXES",
    "LOCK_NAME",
    "PRUNE_COMMAND",
    "BuildLock",
    "CacheGone",
    "CacheLease",
    "ImageCache",
    "MappedImages",
    "Preprocess",
    "cache_key",
    "cache_stem",
    "default_workers",
    "get_image_cache",
    "has_images",
    "parse_crop",
    "parse_size",
    "scan_images",
]
