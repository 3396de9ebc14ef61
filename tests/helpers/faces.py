"""Small fake face datasets in the layouts people really have (CelebA from torchvision or Kaggle,
anime faces from Kaggle, plain folders), plus the bad files a real folder may hold.

Plain functions (no pytest fixtures): call them with a ``tmp_path``. Content is deterministic:
a colour gradient with an ellipse ("face") whose colour and position vary per image.

- ``make_celeba_torchvision(root, n)``: ``<root>/celeba/img_align_celeba/`` +
  ``<root>/celeba/list_eval_partition.txt``
- ``make_celeba_kaggle(root, n)``: ``<root>/img_align_celeba/img_align_celeba/`` +
  ``<root>/list_eval_partition.csv``
- ``make_plain_jpeg_folder(folder, n)``: ``<folder>/000001.jpg`` ...
- ``make_anime(root, n)``: ``<root>/images/<i>_<year>.jpg`` of mixed sizes
- ``add_bad_files(folder)``: unreadable files (returned: their names) and convertible ones
  (``CONVERTED``: name to the RGB colour expected at their centre)

The official partition of the CelebA helpers is ``official_partition(n)``: contiguous blocks, like
the real one, of ``n - 2 * (n // 5)`` train, ``n // 5`` val and ``n // 5`` test images.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

CELEBA_SIZE = (218, 178)  # (height, width) of CelebA's aligned images

#: Files ``add_bad_files`` writes that must be kept, converted to RGB: name -> colour in the middle
#: of the top half (the RGBA one is opaque there and transparent, so white, in its bottom half).
CONVERTED = {
    "cmyk.jpg": (255, 0, 0),
    "grey.png": (128, 128, 128),
    "palette.png": (30, 60, 200),
    "rgba.png": (10, 200, 30),
}
#: Files ``add_bad_files`` writes that are not images at all and must be ignored (not counted).
IGNORED = ("README", "notes.txt")


def face_image(index: int, size: tuple[int, int] = CELEBA_SIZE) -> Image.Image:
    """An RGB image ``size`` = (height, width): gradients plus a face-like ellipse for image
    ``index``."""
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    pixels = np.empty((height, width, 3), np.float32)
    pixels[..., 0] = 30 + 180 * xx / max(width - 1, 1)
    pixels[..., 1] = 30 + 180 * yy / max(height - 1, 1)
    pixels[..., 2] = 40 + (index * 37) % 160
    cy = height / 2 + ((index % 5) - 2) * height / 40
    cx = width / 2 + ((index % 3) - 1) * width / 30
    face = ((yy - cy) / (0.32 * height)) ** 2 + ((xx - cx) / (0.3 * width)) ** 2 < 1
    pixels[face] = ((index * 53) % 200 + 40, (index * 97) % 160 + 60, 170)
    return Image.fromarray(pixels.astype(np.uint8))


def write_jpeg(path: Path, image: Image.Image, quality: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG", quality=quality)
    return path


def write_solid(
    path: Path, colour: Sequence[int], size: tuple[int, int] = CELEBA_SIZE, quality: int = 95
) -> Path:
    """A one-colour image (format from the suffix) of ``size`` = (height, width)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (size[1], size[0]), tuple(colour))
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, quality=quality)
    else:
        image.save(path)
    return path


def celeba_names(n: int, start: int = 1) -> list[str]:
    return [f"{i:06d}.jpg" for i in range(start, start + n)]


def official_partition(n: int) -> list[int]:
    """Partition numbers (0 train, 1 val, 2 test) of images 1..n, in contiguous blocks."""
    val = test = n // 5
    return [0] * (n - val - test) + [1] * val + [2] * test


def partition_sizes(n: int) -> list[int]:
    """``[train, val, test]`` sizes of :func:`official_partition`."""
    parts = official_partition(n)
    return [parts.count(k) for k in range(3)]


def make_plain_jpeg_folder(
    folder: Path, n: int = 20, size: tuple[int, int] = CELEBA_SIZE, start: int = 1
) -> list[str]:
    """``n`` face JPEGs ``000001.jpg`` ... directly in ``folder`` (created); their names."""
    names = celeba_names(n, start)
    for offset, name in enumerate(names):
        write_jpeg(folder / name, face_image(start + offset, size))
    return names


def write_partition(path: Path, names: Sequence[str], parts: Sequence[int]) -> Path:
    """``list_eval_partition``: ``name part`` lines (.txt) or Kaggle's CSV with a header."""
    if path.suffix == ".csv":
        lines = ["image_id,partition", *(f"{a},{b}" for a, b in zip(names, parts, strict=True))]
    else:
        lines = [f"{a} {b}" for a, b in zip(names, parts, strict=True)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def make_celeba_torchvision(
    root: Path, n: int = 20, size: tuple[int, int] = CELEBA_SIZE, partition: bool = True
) -> Path:
    """torchvision's layout under ``root``; returns the image folder."""
    folder = root / "celeba" / "img_align_celeba"
    names = make_plain_jpeg_folder(folder, n, size)
    if partition:
        write_partition(root / "celeba" / "list_eval_partition.txt", names, official_partition(n))
    return folder


def make_celeba_kaggle(
    root: Path, n: int = 20, size: tuple[int, int] = CELEBA_SIZE, partition: bool = True
) -> Path:
    """Kaggle's jessicali9530/celeba-dataset layout under ``root``; returns the image folder."""
    folder = root / "img_align_celeba" / "img_align_celeba"
    names = make_plain_jpeg_folder(folder, n, size)
    if partition:
        write_partition(root / "list_eval_partition.csv", names, official_partition(n))
    return folder


ANIME_SIZES = ((96, 96), (120, 104), (64, 72), (150, 150), (90, 110))  # (height, width)


def make_anime(
    root: Path,
    n: int = 20,
    sizes: Sequence[tuple[int, int]] = ANIME_SIZES,
    flat: bool = False,
    suffixes: Sequence[str] = (".jpg",),
) -> Path:
    """Anime-like faces of mixed sizes in ``<root>/images/`` (Kaggle's layout) or, with
    ``flat``, in ``root``; the suffixes cycle (``.jpg``, ``.png``, ``.webp``, ``.bmp``). Returns
    the image folder."""
    folder = root if flat else root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = face_image(i, sizes[i % len(sizes)])
        path = folder / f"{i}_{2000 + i % 19}{suffixes[i % len(suffixes)]}"
        if path.suffix in (".jpg", ".jpeg"):
            image.save(path, quality=90)
        else:
            image.save(path)
    return folder


def add_bad_files(folder: Path, size: tuple[int, int] = CELEBA_SIZE) -> list[str]:
    """Write files a real folder may hold; return the sorted names of those that must be skipped.

    Skipped: a truncated JPEG, a zero-byte JPEG, a text file named ``.jpg`` and a PNG with a
    valid signature and garbage after it. Converted to RGB (see :data:`CONVERTED`): a CMYK JPEG,
    grey (L), palette (P) and RGBA PNGs. Ignored (no image suffix): ``README``, ``notes.txt``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    height, width = size
    buffer = io.BytesIO()
    face_image(999, size).save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not a picture\n")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (folder / "README").write_text("fake dataset\n")
    (folder / "notes.txt").write_text("notes\n")

    Image.new("CMYK", (width, height), (0, 255, 255, 0)).save(folder / "cmyk.jpg", quality=95)
    Image.new("L", (width, height), 128).save(folder / "grey.png")
    palette = Image.new("RGB", (width, height), CONVERTED["palette.png"]).quantize(4)
    assert palette.mode == "P"
    palette.save(folder / "palette.png")
    rgba = np.zeros((height, width, 4), np.uint8)  # transparent black below ...
    rgba[: height // 2] = (*CONVERTED["rgba.png"], 255)  # ... opaque colour above
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    return sorted(["broken.png", "empty.jpg", "text.jpg", "truncated.jpg"])
