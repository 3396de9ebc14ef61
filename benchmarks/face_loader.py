"""Images per second delivered by the CelebA DataModule (decode-once cache) and by a per-item
PIL + torchvision Dataset with 0 and with N DataLoader workers, over epochs of the training
DataLoader (epoch 1, and the median of the later ones).

    python benchmarks/face_loader.py                     # 3000 synthetic 178x218 JPEGs
    python benchmarks/face_loader.py --folder DIR        # your own folder of JPEGs
    python benchmarks/face_loader.py --n 10000 --workers 4

All do CenterCrop(148) then a resize to 64x64 and hand batches of float32 in [0, 1] to the loop
(ours converts its uint8 batches with ``to_float``, as ``on_after_batch_transfer`` does on the
GPU). Epoch 1 of ours includes building the cache from scratch (a new cache folder each run).
Targets: from epoch 2 on, ours (0 workers) >= 50x the PIL loader with 0 workers; in epoch 1 (the
build), ours no slower than the PIL loader with N workers.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from ae_lab.data import CelebADataModule
from ae_lab.data.image_cache import IMAGE_SUFFIXES, default_workers


def realistic_face(index: int, size: tuple[int, int] = (218, 178)) -> Image.Image:
    """Smooth noise at two scales, a gradient and a face-like ellipse: JPEG-realistic content
    (not flat colour, which decodes unrealistically fast)."""
    rng = np.random.default_rng(index)
    height, width = size
    coarse = Image.fromarray((rng.random((9, 8, 3)) * 255).astype(np.uint8))
    fine = Image.fromarray((rng.random((55, 45, 3)) * 255).astype(np.uint8))
    pixels = 0.6 * np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), float)
    pixels += 0.25 * np.asarray(fine.resize((width, height), Image.Resampling.BICUBIC), float)
    yy, xx = np.mgrid[0:height, 0:width]
    pixels += (0.15 * 255 * yy / height)[..., None]
    face = ((yy - height * 0.5) / (0.3 * height)) ** 2 + ((xx - width * 0.5) / (0.28 * width)) ** 2
    pixels[face < 1] = 0.5 * pixels[face < 1] + 0.5 * np.array([224, 172, 140])
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def make_folder(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        path = folder / f"{i:06d}.jpg"
        if not path.exists():
            realistic_face(i).save(path, quality=90)
    return folder


class PILFolder(Dataset):
    """The usual baseline: one file opened, decoded and transformed per item."""

    def __init__(self, paths: list[Path], transform) -> None:
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.paths[index]) as image:
            return self.transform(image.convert("RGB"))


def timed_epoch(loader, to_float=None) -> tuple[int, float]:
    """Images delivered by one pass over ``loader`` and the seconds it took."""
    count, start = 0, time.perf_counter()
    for batch in loader:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        if to_float is not None:
            images = to_float(images)
        count += images.shape[0]
    return count, time.perf_counter() - start


def median_epoch(epochs: list[tuple[int, float]]) -> tuple[int, float]:
    """The epoch of median speed among ``epochs`` (one short epoch is a noisy measurement)."""
    return sorted(epochs, key=lambda e: e[0] / e[1])[len(epochs) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="synthetic images (default 3000)")
    parser.add_argument("--folder", type=Path, help="use this folder of JPEGs instead")
    parser.add_argument("--work-dir", type=Path, help="keep the synthetic images here")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--epochs", type=int, default=10, help="epochs of ours; 'epoch 2' is the median of 2..N"
    )
    parser.add_argument(
        "--baseline-epochs", type=int, default=3, help="epochs of each PIL loader (default 3)"
    )
    parser.add_argument("--workers", type=int, default=2, help="baseline DataLoader workers")
    parser.add_argument("--cache-workers", type=int, default=default_workers())
    parser.add_argument("--crop", type=int, default=148)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads in the main process (default 1: a 1.5M-element uint8->float copy "
        "gains nothing from more, and on a small shared machine they wait for busy cores)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="  %(message)s")
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="face_loader_"))
    work.mkdir(parents=True, exist_ok=True)
    if args.folder:
        folder = args.folder
    else:
        print(f"writing {args.n} synthetic 178x218 JPEGs (quality 90) to {work / 'faces'} ...")
        folder = make_folder(work / "faces", args.n)
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    cache_dir = Path(tempfile.mkdtemp(prefix="cache_", dir=work))  # epoch 1 builds from scratch
    rows = []
    baselines: dict[int, list[tuple[int, float]]] = {}
    try:
        # (a) ours: decode once into a memory-mapped uint8 array, batches by indexing
        print(f"ours: CelebADataModule(crop={args.crop}, size={args.size}), cache built in epoch 1")
        start = time.perf_counter()
        dm = CelebADataModule(
            str(folder),
            batch_size=args.batch_size,
            val_fraction=0.0,
            test_fraction=0.0,
            crop=args.crop,
            size=args.size,
            cache_dir=str(cache_dir),
            cache_workers=args.cache_workers,
        )
        dm.prepare_data()
        loader = dm.train_dataloader()
        build = time.perf_counter() - start
        count, seconds = timed_epoch(loader, dm.to_float)
        later = [timed_epoch(loader, dm.to_float) for _ in range(args.epochs - 1)]
        ours = [(count, build + seconds), median_epoch(later)]
        rows.append(("ours (cache, 0 workers)", ours))

        # (b) baselines: PIL per item + torchvision transforms, in the main process and in workers
        transform = transforms.Compose(
            [transforms.CenterCrop(args.crop), transforms.Resize(args.size), transforms.ToTensor()]
        )
        for workers in sorted({0, args.workers}):
            print(f"baseline: PIL + CenterCrop/Resize/ToTensor, {workers} DataLoader workers")
            baseline_loader = DataLoader(
                PILFolder(paths, transform),
                batch_size=args.batch_size,
                shuffle=True,
                drop_last=True,
                num_workers=workers,
                persistent_workers=workers > 0,
            )
            epochs = [timed_epoch(baseline_loader)]
            later = [timed_epoch(baseline_loader) for _ in range(args.baseline_epochs - 1)]
            epochs.append(median_epoch(later))
            rows.append((f"baseline (PIL, {workers} workers)", epochs))
            baselines[workers] = epochs
            del baseline_loader
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
        if not args.work_dir and not args.folder:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print(
        f"{len(paths)} images, batch {args.batch_size}, crop {args.crop} -> {args.size}x{args.size}"
    )
    print(f"epoch 2: the median of epochs 2..{args.epochs} (PIL: 2..{args.baseline_epochs})")
    print(f"{'loader':<28} {'epoch 1 img/s':>14} {'epoch 2 img/s':>14} {'seconds 1 / 2':>16}")
    for name, epochs in rows:
        rates = [count / seconds for count, seconds in epochs]
        times = f"{epochs[0][1]:.2f} / {epochs[1][1]:.2f}"
        print(f"{name:<28} {rates[0]:>14,.0f} {rates[1]:>14,.0f} {times:>16}")

    def rate(epoch: tuple[int, float]) -> float:
        return epoch[0] / epoch[1]

    steady = rate(ours[1]) / rate(baselines[0][1])
    first = rate(ours[0]) / rate(baselines[args.workers][0])
    print(f"epoch 2, ours / PIL with 0 workers: {steady:,.1f}x (target >= 50x)")
    print(
        f"epoch 1 (ours builds the cache), ours / PIL with {args.workers} workers: {first:,.2f}x "
        "(target >= 1x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
