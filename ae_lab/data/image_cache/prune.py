"""Remove the image caches nobody needs: ``python -m ae_lab.data.image_cache.prune [CACHE_DIR]``.

In ``CACHE_DIR`` (default ``data/cache``, where ``data.cache_dir`` points unless set otherwise) it
removes, unless another process holds them (a run that uses them):

- caches that are out of date: their source folder is gone, its files changed since the cache was
  built (a run would build a new one), or another version of ae_lab wrote them;
- arrays of ours left without a manifest, and temporary files of builds that did not finish.

Current caches stay (``--all`` removes them too; they are rebuilt when next needed). Each cache is
listed with what happened to it and why. ``--dry-run`` removes nothing and says what would go.
Runs remove superseded caches themselves once nobody holds them; this is for the rest, and for
reclaiming space.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ae_lab.data.image_cache import store
from ae_lab.data.image_cache.decode import IMAGE_SUFFIXES, Preprocess
from ae_lab.data.image_cache.key import FORMAT_VERSION, cache_key, scan_images
from ae_lab.data.image_cache.lock import build_lock
from ae_lab.errors import UserError

DEFAULT_CACHE_DIR = "data/cache"
DEFAULT_WAIT_S = 60.0
_OURS = re.compile(r"^.+-[0-9a-f]{16}\.u8$")  # <name>-<settings>-<16 hex of the key>.u8


@dataclass
class Pruned:
    """One cache and what became of it."""

    name: str
    size: int  # bytes of its array
    why: str
    removed: bool


def out_of_date(manifest: dict[str, Any]) -> str | None:
    """Why a run would not use this cache any more, or None when it is current."""
    if manifest.get("version") != FORMAT_VERSION:
        return "written by another version of ae_lab"
    source = Path(str(manifest.get("source", "")))
    if not source.is_dir():
        return f"its source folder {source} is gone"
    try:
        preprocess = Preprocess.from_settings(manifest["settings"])
        suffixes = tuple(manifest.get("suffixes") or IMAGE_SUFFIXES)
        current = cache_key(scan_images(source, suffixes), preprocess)
    except (OSError, KeyError, TypeError, ValueError):
        return f"its source folder {source} cannot be read"
    if current != manifest.get("key"):
        return f"the files in {source} changed since it was built"
    return None


def _size(path: Path | None) -> int:
    try:
        return path.stat().st_size if path is not None else 0
    except OSError:
        return 0


def prune(
    cache_dir: str | Path,
    *,
    everything: bool = False,
    dry_run: bool = False,
    wait_s: float = DEFAULT_WAIT_S,
) -> tuple[list[Pruned], int]:
    """Prune ``cache_dir`` (see the module's notes): each cache with its fate, and the number of
    temporary files removed."""
    cache_dir = Path(cache_dir).expanduser()
    if not cache_dir.is_dir():
        raise UserError(
            f"{cache_dir} is not a folder (the image caches are in data.cache_dir, by default "
            f"{DEFAULT_CACHE_DIR})"
        )
    results: list[Pruned] = []
    try:
        with build_lock(cache_dir, "pruning", wait_s):
            temps = [p for p in cache_dir.iterdir() if store.TEMP_RE.match(p.name)]
            if not dry_run:
                temps = store.remove_temp_files(cache_dir)
            named = set()
            for manifest_path, manifest in store.manifests(cache_dir):
                array = store.array_path(manifest_path, manifest)
                if array is not None:
                    named.add(array.name)
                why = out_of_date(manifest)
                if array is None or not array.exists():
                    why = "its array is missing"
                if why is None and not everything:
                    results.append(Pruned(manifest_path.stem, _size(array), "current", False))
                    continue
                results.append(_remove(manifest_path, array, why or "current", dry_run))
            for array in sorted(cache_dir.glob("*" + store.ARRAY_SUFFIX)):
                if array.name not in named and _OURS.match(array.name):
                    manifest_path = array.with_suffix(".json")
                    results.append(_remove(manifest_path, array, "no manifest", dry_run))
    except OSError as error:
        raise UserError(f"cannot prune {cache_dir} ({error.strerror or error})") from None
    return results, len(temps)


def _remove(manifest_path: Path, array: Path | None, why: str, dry_run: bool) -> Pruned:
    size = _size(array)
    if store.remove_unused(manifest_path, array, dry_run=dry_run):
        return Pruned(manifest_path.stem, size, why, True)
    return Pruned(manifest_path.stem, size, f"{why}; in use by another process", False)


def _gb(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e8 else f"{size / 1e6:.1f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ae_lab.data.image_cache.prune",
        description="Remove image caches that are out of date and not in use.",
    )
    parser.add_argument(
        "cache_dir", nargs="?", default=DEFAULT_CACHE_DIR, help="default: %(default)s"
    )
    parser.add_argument("--all", action="store_true", help="remove current caches too")
    parser.add_argument("--dry-run", action="store_true", help="say what would go; remove nothing")
    parser.add_argument(
        "--wait", type=float, default=DEFAULT_WAIT_S, help="seconds to wait for a build in progress"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        results, temps = prune(
            args.cache_dir, everything=args.all, dry_run=args.dry_run, wait_s=args.wait
        )
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    verb = "would remove" if args.dry_run else "removed"
    for entry in results:
        fate = verb if entry.removed else "kept"
        print(f"{fate:<13} {entry.name}  {_gb(entry.size)}  ({entry.why})")
    if temps:
        print(f"{verb} {temps} temporary file{'s' * (temps > 1)} of unfinished builds")
    gone = [e for e in results if e.removed]
    held = [e for e in results if not e.removed and "in use" in e.why]
    print(
        f"{args.cache_dir}: {verb} {len(gone)} cache{'s' * (len(gone) != 1)} "
        f"({_gb(sum(e.size for e in gone))}); kept {len(results) - len(gone)} "
        f"({len(held)} in use)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
