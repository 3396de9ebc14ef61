"""One image file to uint8 ``(3, h, w)`` pixels: the settings that decide the pixels, the PIL
decode and the few words that say why a file was skipped.

Preprocessing, in this order: EXIF orientation; an optional centred square crop of side ``crop``
(``min(crop, h, w)`` for smaller images, at the position torchvision's ``CenterCrop`` uses); an
optional resize to ``size`` ``(h, w)`` (bilinear, antialiased, the aspect ratio is not kept). With
neither ``crop`` nor ``size``, the build gives every image the size of the first readable one
(:func:`first_size`). Anything PIL can convert becomes RGB (transparency over white); files that
cannot be decoded completely (truncated, empty, not images) are skipped with a reason.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ae_lab.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
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

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Preprocess:
        """The inverse of :meth:`settings` (as a manifest stores them)."""
        size = settings.get("size")
        return cls(settings.get("crop"), tuple(size) if size else None)

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


def decode_image(path: str, crop: int | None, size: tuple[int, int]) -> np.ndarray:
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


def skip_reason(path: str, error: Exception) -> str:
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


def try_decode(path: str, crop: int | None, size: tuple[int, int]) -> bytes | str:
    """The pixels as bytes, or why the file was skipped (a str). Only ``Exception`` is caught:
    KeyboardInterrupt and SystemExit go through."""
    try:
        return decode_image(path, crop, size).tobytes()
    except Exception as error:  # any bad file is skipped, never the end of the run
        return skip_reason(path, error)


def decode_chunk(paths: list[str], crop: int | None, size: tuple[int, int]) -> list[bytes | str]:
    """:func:`try_decode` of each path (one task of a decode worker)."""
    return [try_decode(path, crop, size) for path in paths]


def first_size(paths: Sequence[str]) -> tuple[int, int] | None:
    """``(h, w)`` (after EXIF orientation) of the first file whose header PIL can read."""
    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(path) as image:
                    width, height = image.size
                    if _orientation(image) in (5, 6, 7, 8):
                        width, height = height, width
                    return height, width
        except Exception:
            continue
    return None
