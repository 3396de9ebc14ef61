"""Face datasets, CelebA and anime faces: where each one's images are, and CelebA's official
split. Everything else is :class:`~ae_lab.data.image_folder.ImageFolderDataModule`'s."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ae_lab.data.image_cache import ImageCache, has_images
from ae_lab.data.image_folder import ImageFolderDataModule
from ae_lab.errors import UserError

log = logging.getLogger(__name__)

PARTITION_NAMES = ("list_eval_partition.txt", "list_eval_partition.csv")
CELEBA_KAGGLE = "kaggle datasets download -d jessicali9530/celeba-dataset -p {root} --unzip"
ANIME_KAGGLE = "kaggle datasets download -d splcher/animefacedataset -p {root} --unzip"


# ---- CelebA --------------------------------------------------------------------------------------
def read_partition(path: Path) -> dict[str, int]:
    """CelebA's ``list_eval_partition`` (``000001.jpg 0`` lines, or Kaggle's CSV with a header):
    file name to 0 (train), 1 (val) or 2 (test). Lines that do not parse are ignored."""
    partition = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    for line in text.splitlines():
        fields = line.replace(",", " ").split()
        if len(fields) >= 2 and fields[1] in ("0", "1", "2"):
            partition[fields[0]] = int(fields[1])
    return partition


class CelebADataModule(ImageFolderDataModule):
    """CelebA's aligned faces (218x178 JPEGs), usually centre-cropped to 148 and resized to 64.

    Layouts looked for under ``root``, in this order:
    1. torchvision's ``<root>/celeba/img_align_celeba/`` (+ ``<root>/celeba/list_eval_partition.txt``)
    2. Kaggle's ``<root>/img_align_celeba/img_align_celeba/`` (+ ``<root>/list_eval_partition.csv``)
    3. ``<root>/img_align_celeba/`` (+ a partition file in ``<root>``)
    4. JPEGs directly in ``<root>`` (+ a partition file in ``<root>``)
    The official partition is used when its file is there (listed files that are missing or
    unreadable are left out, files it does not list too); otherwise a seeded split by
    ``val_fraction`` and ``test_fraction``.
    """

    cache_name = "celeba"

    def __init__(self, *args, crop: int | None = 148, **kwargs) -> None:
        super().__init__(*args, crop=crop, **kwargs)

    def layouts(self) -> list[tuple[Path, list[Path]]]:
        """``(image folder, partition file candidates)`` of each accepted layout, in order."""
        root = self.root_path
        in_root = [root / name for name in PARTITION_NAMES]
        torchvision_dir = root / "celeba"
        return [
            (torchvision_dir / "img_align_celeba", [torchvision_dir / n for n in PARTITION_NAMES]),
            (root / "img_align_celeba" / "img_align_celeba", in_root[::-1]),
            (root / "img_align_celeba", in_root),
            (root, in_root),
        ]

    def _layout(self) -> tuple[Path, Path | None] | None:
        for folder, partitions in self.layouts():
            if has_images(folder):
                partition = next((p for p in partitions if p.is_file()), None)
                return folder, partition
        return None

    def image_folder(self) -> Path | None:
        found = self._layout()
        return found[0] if found else None

    def missing_message(self) -> str:
        root = self.root_path
        zips = sorted(p.name for p in (*root.glob("*.zip"), *root.glob("celeba/*.zip")))
        unzip = f" Found {', '.join(zips)}: unzip it there." if zips else ""
        return (
            f"CelebA not found in {root}: expected JPEGs in celeba/img_align_celeba/ "
            "(torchvision), img_align_celeba/img_align_celeba/ (Kaggle), img_align_celeba/ "
            f"or the folder itself.{unzip} Get it with: {CELEBA_KAGGLE.format(root=root)} "
            "(or set data.root=DIR)"
        )

    def fetch(self) -> None:
        if not self.download:
            return
        try:
            import torchvision

            torchvision.datasets.CelebA(self.root, split="all", download=True)
        except Exception as exc:  # Google Drive quotas, no network, gdown missing...
            reason = " ".join(str(exc).split())[:160] or type(exc).__name__
            raise UserError(
                f"downloading CelebA with torchvision into {self.root_path} failed ({reason}). "
                f"Get it with: {CELEBA_KAGGLE.format(root=self.root_path)}"
            ) from None

    def split_rows(self, cache: ImageCache) -> dict[str, np.ndarray]:
        found = self._layout()
        partition_file = found[1] if found else None
        partition = read_partition(partition_file) if partition_file else {}
        if partition:
            rows = {
                name: cache.rows_of([f for f, part in partition.items() if part == number])
                for number, name in enumerate(("train", "val", "test"))
            }
            used = sum(len(r) for r in rows.values())
            if used:
                missing = len(partition) - used
                if missing:
                    log.info(
                        "CelebA: %d of the %d images in %s are missing or unreadable; "
                        "left out", missing, len(partition), partition_file.name
                    )  # fmt: skip
                return {name: np.sort(r) for name, r in rows.items()}
            log.warning(
                "CelebA: %s names none of the images in %s; using a seeded split instead",
                partition_file,
                cache.source,
            )
        return self.fraction_split(cache.shape[0])


# ---- anime faces ---------------------------------------------------------------------------------
class AnimeFacesDataModule(ImageFolderDataModule):
    """Anime faces of mixed sizes, each resized to a ``size`` square (64 by default, 88 in the
    study): Kaggle's ``<root>/images/`` or any flat folder of images in ``<root>``; a seeded split
    by ``val_fraction`` and ``test_fraction``."""

    cache_name = "anime"

    def image_folder(self) -> Path | None:
        root = self.root_path
        for folder in (root / "images", root):
            if has_images(folder):
                return folder
        return None

    def missing_message(self) -> str:
        root = self.root_path
        download = " There is no automatic download (Kaggle needs an account)." * self.download
        return (
            f"anime faces not found in {root}: expected images (jpg, png, webp, bmp) in "
            f"images/ (Kaggle) or the folder itself.{download} Get them with: "
            f"{ANIME_KAGGLE.format(root=root)} (or set data.root=DIR)"
        )
