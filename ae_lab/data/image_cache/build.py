"""Building a cache (:func:`build_cache`): every image of a :class:`~.key.Plan` decoded into
``<stem>.u8`` under a temporary name, then its manifest, written last to mark it finished.

The decoding runs in workers that never outlive the build (:mod:`~ae_lab.data.image_cache.workers`).
A build that stops early (Ctrl-C, SIGTERM, an error, a full disk) removes its temporary file and
ends its workers before the exception goes on; one that is killed leaves a temporary file that the
next holder of the build lock deletes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from ae_lab import atomic
from ae_lab.data.image_cache import decode, store
from ae_lab.data.image_cache.key import FORMAT_VERSION, Plan
from ae_lab.data.image_cache.lock import BuildLock
from ae_lab.data.image_cache.workers import decode_all, default_workers
from ae_lab.errors import UserError

log = logging.getLogger(__name__)

_SHOWN_SKIPPED = 5  # names in the one-line summary of skipped files


def build_cache(plan: Plan, workers: int | None, lock: BuildLock) -> dict[str, Any]:
    """Decode every file into ``<stem>.u8`` and write its manifest (hold the build lock)."""
    folder, files, preprocess = plan.folder, plan.files, plan.preprocess
    workers = default_workers() if workers is None else max(1, int(workers))
    manifest_path = plan.manifest_path
    array_path = manifest_path.with_suffix(store.ARRAY_SUFFIX)
    manifest_path.unlink(missing_ok=True)  # a manifest from before is not valid for the new array
    paths = [str(folder / file) for file, _, _ in files]
    size = preprocess.fixed_shape() or decode.first_size(paths)
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
    temp = atomic.temp_name(array_path)
    kept: list[str] = []
    skipped: list[tuple[str, str]] = []
    crc = store.RunningCRC()
    try:
        with (
            open(temp, "w+b") as out,  # read back for the sampled checksum
            contextlib.closing(decode_all(paths, preprocess.crop, size, workers)) as results,
        ):
            for (file, _, _), result in zip(files, results, strict=True):
                if isinstance(result, str):
                    skipped.append((file, result))
                else:
                    out.write(result)
                    crc.update(result)
                    kept.append(file)
                lock.progress()
            out.flush()
            os.fsync(out.fileno())
            checksum = store.checksums(out.fileno(), crc.value)
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
        "format": store.MANIFEST_FORMAT,
        "version": FORMAT_VERSION,
        "key": plan.key,
        "name": plan.name,
        "source": str(folder),
        "suffixes": list(plan.suffixes),
        "settings": preprocess.settings(),
        "array": array_path.name,
        "dtype": "uint8",
        "shape": [len(kept), 3, size[0], size[1]],
        "checksum": checksum,
        "files": kept,
        "skipped": skipped,
        "seconds": round(seconds, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    store.write_json_atomic(manifest_path, manifest)  # last: its presence marks a finished cache
    atomic.fsync_folder(manifest_path.parent)
    log.info(
        "image cache: %d images in %.1f s (%d skipped) -> %s (%.1f MB)",
        len(kept),
        seconds,
        len(skipped),
        array_path,
        array_path.stat().st_size / 1e6,
    )
    return manifest


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
