"""Decode a folder of images once into one uint8 array on disk, then batch by indexing it.

Decoding and resizing a JPEG costs far more than a small VAE's training step at 64x64, so a face
folder is decoded, cropped and resized once, into ``<cache_dir>/<name>-<settings>-<key>.u8``: raw
uint8 pixels shaped ``(N, 3, H, W)``, memory-mapped afterwards. Beside it, ``<same stem>.json``
(the manifest) lists the kept files in row order, the skipped ones with the reason, the shape and
the settings. The manifest is written last, so it marks a finished cache.

The key hashes the folder's listing (sorted names, sizes and mtimes), the preprocessing settings
and :data:`FORMAT_VERSION`: a cache is reused while nothing changed and rebuilt when a file is
added, removed or touched, or a setting changes. Builds write to temporary files in the cache
folder, fsync them and ``os.replace`` them into place; an interrupted build leaves at most a
temporary file, which the next build deletes. Concurrent processes (DDP ranks) take turns on a
lock file, so one builds and the others reuse. Only files this module wrote are ever deleted: its
temporary files, and the caches of the same folder and settings that a rebuild superseded.

Preprocessing, in this order: EXIF orientation; an optional centred square crop of side ``crop``
(``min(crop, h, w)`` for smaller images, at the position torchvision's ``CenterCrop`` uses); an
optional resize to ``size`` ``(h, w)`` (bilinear, antialiased, the aspect ratio is not kept). With
neither ``crop`` nor ``size``, images keep the size of the first readable one and the rest are
resized to it. Anything PIL can convert becomes RGB (transparency over white); files that cannot
be decoded completely (truncated, empty, not images) are skipped and named in one warning line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import multiprocessing
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ae_lab.errors import UserError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the pixels a given file and setting produce change
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
MANIFEST_FORMAT = "ae_lab.image_cache"
LOCK_NAME = "ae_lab_image_cache.lock"
_TEMP_RE = re.compile(r"^.+\.(u8|json)\.tmp-\d+-[0-9a-f]{8}$")  # <stem>.u8.tmp-<pid>-<random>
_ORIENTATION = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SHOWN_SKIPPED = 5  # names in the one-line summary of skipped files


# ---- settings ------------------------------------------------------------------------------------
def parse_size(value: Any) -> tuple[int, int] | None:
    """``None`` (keep), an int (a square) or ``[h, w]`` (or ``"HxW"``) to ``(h, w)``; a UserError
    otherwise."""
    if value is None:
        return None
    given = value
    if isinstance(value, str):
        text = value.strip().lower()
        value = text.split("x") if re.fullmatch(r"\d+(x\d+)?", text) else None
        if value and len(value) == 1:
            value = int(value[0])
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = [value, value]
    try:
        if isinstance(value, bool) or any(isinstance(v, (bool, float)) for v in value):
            raise TypeError
        height, width = (int(v) for v in value)
    except (TypeError, ValueError):
        raise UserError(f"size must be null, an int or [height, width], got {given!r}") from None
    if height < 1 or width < 1:
        raise UserError(f"size must be positive, got {given!r}")
    return height, width


def parse_crop(value: Any) -> int | None:
    """``None`` (no crop) or the side of the centred square crop."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UserError(f"crop must be null or a positive int (a centred square), got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Preprocess:
    """What happens to every image: centred square ``crop`` then resize to ``size`` ``(h, w)``."""

    crop: int | None = None
    size: tuple[int, int] | None = None

    @classmethod
    def from_config(cls, crop: Any = None, size: Any = None) -> Preprocess:
        return cls(parse_crop(crop), parse_size(size))

    def settings(self) -> dict[str, Any]:
        """Everything that decides the pixels; part of the cache key."""
        return {
            "crop": self.crop,
            "size": list(self.size) if self.size else None,
            "resample": "bilinear",
            "alpha": "over white",
        }

    def tag(self) -> str:
        """A readable part of the cache file name, e.g. ``crop148-64x64``."""
        parts = [f"crop{self.crop}"] if self.crop else []
        parts.append(f"{self.size[0]}x{self.size[1]}" if self.size else "keep")
        return "-".join(parts)

    def fixed_shape(self) -> tuple[int, int] | None:
        """``(h, w)`` of every output image when the settings alone decide it."""
        if self.size:
            return self.size
        if self.crop:
            return self.crop, self.crop
        return None


# ---- the array -----------------------------------------------------------------------------------
class MappedImages:
    """A read-only uint8 ``(N, C, H, W)`` array in a raw file, memory-mapped on first use.

    ``index`` picks rows of the file (an int array, or a contiguous range given as a slice), so
    the splits of one cache share its pages instead of copying them. Pickling keeps only the path,
    shape and index (DataLoader workers reopen the map), never the pixels. Supports what
    :class:`~ae_lab.data.arrays.IndexedImages` uses: ``len``, ``shape`` and ``images[int_array]``.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(
        self,
        path: str | os.PathLike,
        shape: Sequence[int],
        index: np.ndarray | slice | Sequence[int] | None = None,
    ) -> None:
        self.path = str(path)
        self.file_shape = tuple(int(s) for s in shape)  # the whole file
        if len(self.file_shape) != 4:
            raise ValueError(f"shape must be (N, C, H, W), got {self.file_shape}")
        self.start, self.stop, self.index = 0, self.file_shape[0], None
        if isinstance(index, slice):
            start, stop, step = index.indices(self.file_shape[0])
            if step != 1:
                raise ValueError("a slice index must have step 1")
            self.start, self.stop = start, max(start, stop)
        elif index is not None:
            rows = np.asarray(index, dtype=np.int64).reshape(-1)
            if len(rows) and (rows.min() < 0 or rows.max() >= self.file_shape[0]):
                raise IndexError(f"row index out of range for {self.file_shape[0]} images")
            if len(rows) == 0:
                self.start = self.stop = 0
            elif rows[-1] - rows[0] == len(rows) - 1 and np.all(np.diff(rows) == 1):
                self.start, self.stop = int(rows[0]), int(rows[-1]) + 1  # contiguous: a range
            else:
                small = self.file_shape[0] < 2**31
                self.index = rows.astype(np.int32 if small else np.int64)
        self._array: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), *self.file_shape[1:])

    def __len__(self) -> int:
        return len(self.index) if self.index is not None else self.stop - self.start

    def _mapped(self) -> np.ndarray:
        if self._array is None:
            if self.index is not None:
                first, count = 0, self.file_shape[0]  # the whole file, rows picked by the index
            else:
                first, count = self.start, self.stop - self.start
            row_shape = self.file_shape[1:]
            if count == 0:
                self._array = np.empty((0, *row_shape), dtype=np.uint8)
            else:
                self._array = np.memmap(
                    self.path,
                    dtype=np.uint8,
                    mode="r",
                    offset=first * math.prod(row_shape),
                    shape=(count, *row_shape),
                )
        return self._array

    def __getitem__(self, key: Any) -> np.ndarray:
        """Rows of this view: a fancy index (an int array) returns a writable copy."""
        array = self._mapped()
        if self.index is not None:
            return array[self.index[key]]
        return array[key]

    def subset(self, index: np.ndarray | Sequence[int]) -> MappedImages:
        """A view of some rows of this view (no pixels are copied)."""
        rows = np.asarray(index, dtype=np.int64)
        rows = self.index[rows] if self.index is not None else rows + self.start
        return MappedImages(self.path, self.file_shape, rows)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """The rows as an ndarray: a read-only view of the map for a contiguous range (unless a
        copy is asked for), a copy for an index."""
        array = self[:] if self.index is None else self[np.arange(len(self))]
        if copy:
            return np.array(array, dtype=dtype, copy=True)
        return np.asarray(array, dtype=dtype)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_array"] = None  # reopened lazily where it is unpickled
        return state

    def __repr__(self) -> str:
        return f"MappedImages({self.path!r}, shape={self.shape})"


@dataclass
class ImageCache:
    """A finished cache: the array file, its shape and the source file of every row."""

    array_path: Path
    manifest_path: Path
    shape: tuple[int, int, int, int]
    files: list[str]  # row i holds files[i] (relative to source)
    skipped: list[tuple[str, str]]  # (file, reason) of the files left out
    source: Path
    built: bool = False  # built by this call (else reused)
    _rows: dict[str, int] | None = field(default=None, repr=False)

    def images(self, index: np.ndarray | Sequence[int] | None = None) -> MappedImages:
        """The whole array, or the rows in ``index``, memory-mapped."""
        return MappedImages(self.array_path, self.shape, index)

    def rows_of(self, names: Sequence[str]) -> np.ndarray:
        """Row numbers of the named files, in the given order; names not in the cache are dropped."""
        if self._rows is None:
            self._rows = {name: row for row, name in enumerate(self.files)}
        rows = (self._rows.get(name) for name in names)
        return np.fromiter((r for r in rows if r is not None), dtype=np.int64)


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


# ---- decoding ------------------------------------------------------------------------------------
def _orientation(image: Image.Image) -> int:
    if "exif" not in image.info:
        return 1
    try:
        return int(image.getexif().get(_ORIENTATION, 1))
    except Exception:  # a broken EXIF block does not make a broken image
        return 1


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):  # 16-bit grey: keep the top byte
        grey = np.asarray(image).astype(np.int64) >> 8
        image = Image.fromarray(grey.clip(0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _draft_scale(box_w: float, box_h: float, size: tuple[int, int], full: tuple[int, int]) -> int:
    """The largest JPEG DCT scale 1/k (k in 8, 4, 2) that keeps the crop box at least as big as
    the target, so the final resize still only shrinks; 1 when none does."""
    height, width = size
    for k in (8, 4, 2):
        if box_w / k >= width and box_h / k >= height and min(full) // k >= 2:
            return k
    return 1


def _decode(path: str, crop: int | None, size: tuple[int, int]) -> np.ndarray:
    """One image file as uint8 ``(3, h, w)``, preprocessed; raises if it cannot be fully decoded."""
    target_h, target_w = size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL's notes on palettes, EXIF and large images
        with Image.open(path) as image:
            full_w, full_h = image.size
            orientation = _orientation(image)
            width, height = (full_h, full_w) if orientation in (5, 6, 7, 8) else (full_w, full_h)
            if crop:  # centred square, placed as torchvision's CenterCrop places it
                side = min(crop, width, height)
                left, top = round((width - side) / 2), round((height - side) / 2)
                box = (left, top, left + side, top + side)
            else:
                box = (0, 0, width, height)
            box_w, box_h = box[2] - box[0], box[3] - box[1]
            scale = 1
            if image.format == "JPEG":
                k = _draft_scale(box_w, box_h, size, (full_w, full_h))
                if k > 1:
                    drafted = image.draft(None, (full_w // k, full_h // k))
                    if drafted is not None:
                        scale = full_w / drafted[1][2]  # decoded at 1/scale in the DCT
            image.load()  # the whole file: a truncated one raises here
            decoded = image
            if orientation in _TRANSPOSE:
                decoded = decoded.transpose(_TRANSPOSE[orientation])
            decoded = _to_rgb(decoded)
            if (box_w, box_h) != (target_w, target_h) or scale != 1:
                scaled = tuple(v / scale for v in box)
                decoded = decoded.resize(
                    (target_w, target_h), Image.Resampling.BILINEAR, box=scaled
                )
            elif box != (0, 0, width, height):
                decoded = decoded.crop(box)
            pixels = np.asarray(decoded)
    if pixels.shape != (target_h, target_w, 3):
        raise ValueError(f"decoded to {pixels.shape}, expected {(target_h, target_w, 3)}")
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def _reason(path: str, error: Exception) -> str:
    """A few words on why a file was skipped."""
    if isinstance(error, UnidentifiedImageError):
        with contextlib.suppress(OSError):
            if os.path.getsize(path) == 0:
                return "empty file"
        return "not an image"
    text = " ".join(str(error).split())
    if "truncated" in text:
        return "truncated"
    if isinstance(error, PermissionError):
        return "permission denied"
    return f"{type(error).__name__}: {text}"[:80]


def _try_decode(path: str, crop: int | None, size: tuple[int, int]) -> bytes | str:
    """The pixels as bytes, or why the file was skipped (a str)."""
    try:
        return _decode(path, crop, size).tobytes()
    except Exception as error:  # any bad file is skipped, never the end of the run
        return _reason(path, error)


def _decode_chunk(paths: list[str], crop: int | None, size: tuple[int, int]) -> list[bytes | str]:
    return [_try_decode(path, crop, size) for path in paths]


def _executor(workers: int) -> Executor:
    """Forked processes where fork is safe and cheap (Linux); threads elsewhere (PIL releases
    the GIL while decoding and resizing), to avoid spawn re-importing torch in every worker."""
    if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    return ThreadPoolExecutor(workers)


def _decode_all(
    paths: list[str], crop: int | None, size: tuple[int, int], workers: int
) -> Iterator[bytes | str]:
    """:func:`_try_decode` of every path, in order."""
    if workers <= 1 or len(paths) <= workers:
        for path in paths:
            yield _try_decode(path, crop, size)
        return
    chunk = max(1, min(64, math.ceil(len(paths) / (4 * workers))))
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    executor = _executor(workers)
    try:
        for results in executor.map(
            _decode_chunk, chunks, [crop] * len(chunks), [size] * len(chunks)
        ):
            yield from results
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _first_size(folder: Path, files: Sequence[tuple[str, int, int]]) -> tuple[int, int] | None:
    """``(h, w)`` (after EXIF orientation) of the first file whose header PIL can read."""
    for name, _, _ in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(folder / name) as image:
                    width, height = image.size
                    if _orientation(image) in (5, 6, 7, 8):
                        width, height = height, width
                    return height, width
        except Exception:
            continue
    return None


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


# ---- files on disk -------------------------------------------------------------------------------
def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _temp_name(name: str) -> str:
    """A temporary name beside ``name``, unique across processes and machines."""
    return f"{name}.tmp-{os.getpid()}-{os.urandom(4).hex()}"


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    temp = path.with_name(_temp_name(path.name))
    try:
        with open(temp, "w", encoding="utf-8") as out:
            json.dump(data, out, separators=(",", ":"))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def _read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest at ``path`` if it is one of ours, else None."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        return None
    return data


def _usable(manifest_path: Path, key: str) -> dict[str, Any] | None:
    """The manifest if it describes a finished cache with this key whose array is complete."""
    data = _read_manifest(manifest_path)
    if data is None or data.get("version") != FORMAT_VERSION or data.get("key") != key:
        return None
    try:
        shape = tuple(int(s) for s in data["shape"])
        array = manifest_path.with_name(data["array"])
        if len(shape) != 4 or len(data["files"]) != shape[0]:
            return None
        if array.stat().st_size != math.prod(shape):
            return None
    except (KeyError, TypeError, ValueError, OSError):
        return None
    return data


@contextlib.contextmanager
def _build_lock(cache_dir: Path) -> Iterator[bool]:
    """Hold the cache folder's lock (POSIX ``flock``); yields whether a lock is really held."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock, and no cleaning of other processes' temporary files
        yield False
        return
    with open(cache_dir / LOCK_NAME, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("image cache: waiting for another process building in %s", cache_dir)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_stale_temp_files(cache_dir: Path) -> None:
    """Temporary files of builds that did not finish (only called while holding the lock)."""
    for entry in cache_dir.iterdir():
        if _TEMP_RE.match(entry.name) and entry.is_file():
            with contextlib.suppress(OSError):
                entry.unlink()


def _remove_superseded(cache_dir: Path, keep: Path, manifest: dict[str, Any]) -> None:
    """Caches of ours for the same source, name and settings that this build replaces."""
    for other in cache_dir.glob("*.json"):
        if other == keep:
            continue
        data = _read_manifest(other)
        if data is None or any(data.get(k) != manifest[k] for k in ("source", "name", "settings")):
            continue
        array = other.with_name(str(data.get("array", "")))
        with contextlib.suppress(OSError):
            if array.name.endswith(".u8") and array.parent == cache_dir:
                array.unlink(missing_ok=True)  # the array first: a lone manifest is not usable
            other.unlink()


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


# ---- the entry point -----------------------------------------------------------------------------
def get_image_cache(
    folder: str | os.PathLike,
    cache_dir: str | os.PathLike,
    preprocess: Preprocess,
    *,
    name: str = "images",
    workers: int | None = None,
    suffixes: Sequence[str] = IMAGE_SUFFIXES,
) -> ImageCache:
    """The cache of the images directly in ``folder``, reused when current, else built.

    Raises :class:`UserError` when the folder is missing or holds no usable image, or the cache
    folder cannot be written.
    """
    folder = Path(folder).expanduser().resolve()
    cache_dir = Path(cache_dir).expanduser().resolve()
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder")
    files = scan_images(folder, suffixes)
    if not files:
        raise UserError(f"no image files ({', '.join(suffixes)}) in {folder}")
    key = cache_key(files, preprocess)
    stem = f"{name}-{preprocess.tag()}-{key[:16]}"
    manifest_path = cache_dir / f"{stem}.json"

    manifest = _usable(manifest_path, key)
    built = False
    if manifest is None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            with _build_lock(cache_dir) as locked:
                manifest = _usable(manifest_path, key)  # another process may just have built it
                if manifest is None:
                    if locked:
                        _remove_stale_temp_files(cache_dir)
                    manifest = _build(
                        folder, files, key, stem, cache_dir, preprocess, name, workers
                    )
                    built = True
        except OSError as error:
            raise UserError(
                f"cannot write the image cache in {cache_dir} ({error.strerror or error}); "
                "set data.cache_dir=DIR to a writable folder"
            ) from None
    else:
        log.info(
            "image cache: %d images %s from %s",
            manifest["shape"][0],
            "x".join(map(str, manifest["shape"][1:])),
            manifest_path.with_name(manifest["array"]),
        )
    return ImageCache(
        array_path=manifest_path.with_name(manifest["array"]),
        manifest_path=manifest_path,
        shape=tuple(manifest["shape"]),
        files=list(manifest["files"]),
        skipped=[tuple(s) for s in manifest["skipped"]],
        source=folder,
        built=built,
    )


def _build(
    folder: Path,
    files: list[tuple[str, int, int]],
    key: str,
    stem: str,
    cache_dir: Path,
    preprocess: Preprocess,
    name: str,
    workers: int | None,
) -> dict[str, Any]:
    workers = default_workers() if workers is None else max(1, int(workers))
    manifest_path = cache_dir / f"{stem}.json"
    array_path = cache_dir / f"{stem}.u8"
    manifest_path.unlink(missing_ok=True)  # a manifest from before is not valid for the new array
    size = preprocess.fixed_shape() or _first_size(folder, files)
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
    temp = array_path.with_name(_temp_name(array_path.name))
    kept: list[str] = []
    skipped: list[tuple[str, str]] = []
    paths = [str(folder / file) for file, _, _ in files]
    try:
        with open(temp, "wb") as out:
            results = _decode_all(paths, preprocess.crop, size, workers)
            for (file, _, _), result in zip(files, results, strict=True):
                if isinstance(result, str):
                    skipped.append((file, result))
                else:
                    out.write(result)
                    kept.append(file)
            out.flush()
            os.fsync(out.fileno())
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
        "format": MANIFEST_FORMAT,
        "version": FORMAT_VERSION,
        "key": key,
        "name": name,
        "source": str(folder),
        "settings": preprocess.settings(),
        "array": array_path.name,
        "dtype": "uint8",
        "shape": [len(kept), 3, size[0], size[1]],
        "files": kept,
        "skipped": skipped,
        "seconds": round(seconds, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _write_json_atomic(manifest_path, manifest)  # last: its presence marks a finished cache
    _fsync_dir(cache_dir)
    _remove_superseded(cache_dir, manifest_path, manifest)
    log.info(
        "image cache: %d images in %.1f s (%d skipped) -> %s (%.1f MB)",
        len(kept),
        seconds,
        len(skipped),
        array_path,
        array_path.stat().st_size / 1e6,
    )
    return manifest
