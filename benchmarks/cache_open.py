"""What opening an image cache costs, checksums included, on a CelebA-sized cache.

    python -m benchmarks.cache_open                  # 202,599 rows of 3x64x64: 2.49 GB
    python -m benchmarks.cache_open --size 218x178   # full-size CelebA: 23.6 GB (disk space!)

Writes a synthetic cache (random bytes; the manifest lists 202,599 file names, like CelebA's)
under the name ``get_image_cache`` looks for, then times ``get_image_cache`` reusing it:

- as built: the manifest, the lease, the CRC-32 of 64 sampled 64 KiB blocks (every open);
- after the array's mtime changed (a copy, a touch): the CRC-32 of the whole file, once;
each with the file in the page cache (warm) and evicted from it (cold, ``posix_fadvise``).
The baseline is what the reuse cost before checksums: read the manifest, stat the array.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

from PIL import Image

from ae_lab.data.image_cache import (
    FORMAT_VERSION,
    Preprocess,
    cache_key,
    cache_stem,
    get_image_cache,
    scan_images,
    store,
)

CHUNK = 64 << 20


def write_cache(work: Path, rows: int, size: tuple[int, int]) -> tuple[Path, Path, Preprocess]:
    """A source folder (one image) and a cache of ``rows`` random rows under its current key."""
    folder = work / "faces"
    folder.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(folder / "000001.jpg")
    preprocess = Preprocess(size=size)
    key = cache_key(scan_images(folder), preprocess)
    stem = cache_stem("celeba", preprocess, key)
    cache_dir = work / "cache"
    cache_dir.mkdir()
    array = cache_dir / f"{stem}.u8"
    total = rows * 3 * size[0] * size[1]
    block = os.urandom(CHUNK)
    crc = 0
    with open(array, "w+b") as out:
        written = 0
        while written < total:
            data = block[: min(CHUNK, total - written)]
            out.write(data)
            crc = zlib.crc32(data, crc)
            written += len(data)
        out.flush()
        os.fsync(out.fileno())
        checksum = store.checksums(out.fileno(), crc)
    manifest = {
        "format": store.MANIFEST_FORMAT,
        "version": FORMAT_VERSION,
        "key": key,
        "name": "celeba",
        "source": str(folder),
        "suffixes": [".jpg"],
        "settings": preprocess.settings(),
        "array": array.name,
        "dtype": "uint8",
        "shape": [rows, 3, *size],
        "checksum": checksum,
        "files": [f"{i:06d}.jpg" for i in range(1, rows + 1)],
        "skipped": [],
    }
    store.write_json_atomic(cache_dir / f"{stem}.json", manifest)
    return folder, cache_dir, preprocess


def evict(path: Path) -> None:
    """Drop the file's pages from the page cache (clean pages; no root needed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def warm_up(path: Path) -> None:
    """Read the file once, so its pages are in the page cache."""
    with open(path, "rb") as f:
        store.full_crc(f.fileno(), path.stat().st_size)


def timed_open(folder: Path, cache_dir: Path, preprocess: Preprocess) -> float:
    started = time.perf_counter()
    cache = get_image_cache(folder, cache_dir, preprocess, name="celeba")
    seconds = time.perf_counter() - started
    assert not cache.built, "the synthetic cache was not reused"
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=202_599, help="images (CelebA: 202,599)")
    parser.add_argument("--size", default="64x64", help="HxW of a row (default 64x64)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work-dir", type=Path, help="where to write it (default: a temp dir)")
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    logging.basicConfig(level=logging.WARNING, format="  %(message)s")
    work = Path(tempfile.mkdtemp(prefix="cache_open_", dir=args.work_dir))
    try:
        total = args.rows * 3 * size[0] * size[1]
        print(f"writing a {total / 1e9:.2f} GB cache ({args.rows} rows of 3x{size[0]}x{size[1]})")
        started = time.perf_counter()
        folder, cache_dir, preprocess = write_cache(work, args.rows, size)
        print(f"  written in {time.perf_counter() - started:.1f} s")
        manifest_path = next(cache_dir.glob("*.json"))
        array = manifest_path.with_suffix(".u8")
        rows = []

        def baseline() -> float:
            started = time.perf_counter()
            store.read_manifest(manifest_path)
            array.stat()
            return time.perf_counter() - started

        rows.append(("baseline: manifest + stat (no checks)", [baseline() for _ in range(3)]))
        warm = [timed_open(folder, cache_dir, preprocess) for _ in range(args.repeats)]
        rows.append(("as built, warm: samples only", warm))
        cold = []
        for _ in range(args.repeats):
            evict(array)
            cold.append(timed_open(folder, cache_dir, preprocess))
        rows.append(("as built, cold: samples only", cold))
        for label, drop in (("warm", False), ("cold", True)):
            os.utime(array)  # the mtime changes: the next open reads the whole file, once
            if drop:
                evict(array)
            else:
                warm_up(array)
            once = timed_open(folder, cache_dir, preprocess)
            rows.append((f"after a touch, {label}: whole file, once", [once]))
        rows.append(("the open after that", [timed_open(folder, cache_dir, preprocess)]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'open of a ' + f'{total / 1e9:.2f} GB cache':<44} {'median s':>9} {'max s':>8}")
    for label, times in rows:
        print(f"{label:<44} {statistics.median(times):>9.3f} {max(times):>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
