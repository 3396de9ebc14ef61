"""Building and reusing caches: keys and rebuilds, damaged caches, caches in use, builds that are
interrupted, stuck or run side by side (the workers' part is in test_workers.py)."""

from __future__ import annotations

import gc
import json
import logging
import os
import pickle
import signal

import numpy as np
import pytest

from ae_lab.data.image_cache import LOCK_NAME, decode, store
from ae_lab.errors import UserError
from tests.helpers.faces import write_solid
from tests.helpers.image_cache import (
    Child,
    array_of,
    build,
    kill_all,
    names_in,
    needs_fork,
    wait_until,
)


def test_no_usable_image_missing_or_empty_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="is not a folder"):
        build(tmp_path / "nowhere", tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no image files"):
        build(tmp_path / "empty", tmp_path / "cache")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_text("no")
    (tmp_path / "bad" / "b.jpg").write_bytes(b"")
    for crop, size in [(None, None), (148, 64)]:
        with pytest.raises(UserError, match="no (usable|readable) image"):
            build(tmp_path / "bad", tmp_path / "cache", crop=crop, size=size)
    assert names_in(tmp_path / "cache") == []


def test_unwritable_cache_folder_is_a_user_error(folder, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(UserError, match="cannot write the image cache .*data.cache_dir"):
        build(folder, tmp_path / "file" / "cache")


# ---- reuse and rebuilds --------------------------------------------------------------------------
def test_second_use_decodes_nothing(folder, tmp_path, decodes):
    first = build(folder, tmp_path / "cache", crop=148, size=32)
    assert first.built and len(decodes) == 8
    before = first.array_path.stat()
    second = build(folder, tmp_path / "cache", crop=148, size=32)
    assert not second.built and len(decodes) == 8
    after = second.array_path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert np.array_equal(array_of(first), array_of(second))


def test_changed_added_or_removed_file_rebuilds_and_drops_the_old_cache(folder, tmp_path):
    cache_dir = tmp_path / "cache"
    first = build(folder, cache_dir, size=32)
    old = (first.array_path, first.manifest_path)
    del first  # nobody holds it any more
    write_solid(folder / "000002.jpg", (0, 0, 0))  # changed content
    changed = build(folder, cache_dir, size=32)
    assert changed.built and changed.array_path != old[0]
    assert not old[0].exists() and not old[1].exists()
    assert array_of(changed)[1].max() <= 3  # the new, black content
    del changed
    write_solid(folder / "000099.jpg", (9, 9, 9))
    added = build(folder, cache_dir, size=32)
    assert added.built and len(added.files) == 9
    del added
    (folder / "000001.jpg").unlink()
    removed = build(folder, cache_dir, size=32)
    assert removed.built and removed.files[0] == "000002.jpg" and len(removed.files) == 8
    assert len(list(cache_dir.glob("*.u8"))) == 1 and len(list(cache_dir.glob("*.json"))) == 1


def test_changed_setting_builds_another_cache_and_keeps_the_first(folder, tmp_path):
    small = build(folder, tmp_path / "cache", crop=148, size=32)
    large = build(folder, tmp_path / "cache", crop=148, size=48)
    cropped = build(folder, tmp_path / "cache", crop=120, size=48)
    paths = {small.array_path, large.array_path, cropped.array_path}
    assert large.built and cropped.built
    del small, cropped
    assert paths == set((tmp_path / "cache").glob("*.u8"))
    assert array_of(large).shape == (8, 3, 48, 48)
    assert not build(folder, tmp_path / "cache", crop=148, size=32).built


def test_a_damaged_manifest_is_named_and_rebuilt(folder, tmp_path, caplog):
    first = build(folder, tmp_path / "cache", size=32)
    manifest = first.manifest_path
    del first
    manifest.write_text(manifest.read_text()[:200])  # cut short
    with caplog.at_level(logging.INFO, logger="ae_lab.data.image_cache"):
        again = build(folder, tmp_path / "cache", size=32)
    assert again.built and again.shape[0] == 8
    damaged = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
    assert len(damaged) == 1 and "its manifest cannot be read" in damaged[0]


def test_array_without_manifest_or_incomplete_is_rebuilt(folder, tmp_path, decodes):
    first = build(folder, tmp_path / "cache", size=32)
    first.manifest_path.unlink()  # the build "died" before writing its manifest
    again = build(folder, tmp_path / "cache", size=32)
    assert again.built and len(decodes) == 16
    with open(again.array_path, "r+b") as f:  # a manifest whose array is short
        f.truncate(100)
    third = build(folder, tmp_path / "cache", size=32)
    assert third.built and np.array_equal(array_of(third), array_of(first))


# ---- damaged caches ------------------------------------------------------------------------------
def _damage(path, offset, keep_mtime=False):
    """Invert 3 bytes at ``offset`` in place (the size stays)."""
    before = path.stat()
    with open(path, "r+b") as f:
        f.seek(offset)
        data = f.read(3)
        f.seek(offset)
        f.write(bytes(255 - b for b in data))
    if keep_mtime:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


@pytest.mark.parametrize(
    ("where", "found_by"),
    [("middle", "its checksum differs"), ("first block, mtime kept", "sampled blocks differs")],
)
def test_damaged_bytes_of_the_right_size_are_found_and_rebuilt(
    folder, tmp_path, caplog, monkeypatch, where, found_by
):
    monkeypatch.setattr(store, "SAMPLE_BLOCKS", 4)  # 4 blocks of 64 bytes: the middle is not one
    monkeypatch.setattr(store, "SAMPLE_BYTES", 64)
    first = build(folder, tmp_path / "cache", size=32)
    expected, path = array_of(first).copy(), first.array_path
    del first
    size = path.stat().st_size
    if where == "middle":
        _damage(path, size // 2 + 7)  # a write: the mtime changes, so the whole file is checked
    else:
        _damage(path, 5, keep_mtime=True)  # bit rot, say: found in the sampled blocks
    assert path.stat().st_size == size
    with caplog.at_level(logging.INFO, logger="ae_lab.data.image_cache"):
        again = build(folder, tmp_path / "cache", size=32)
    assert again.built and again.array_path == path
    assert np.array_equal(array_of(again), expected)
    damaged = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
    assert len(damaged) == 1 and path.stem in damaged[0] and found_by in damaged[0]
    assert not build(folder, tmp_path / "cache", size=32).built  # and it is good now


def test_an_intact_cache_that_changed_on_disk_is_checked_in_full_once(folder, tmp_path, caplog):
    first = build(folder, tmp_path / "cache", size=32)
    path = first.array_path
    del first
    os.utime(path, ns=(1, 10**18))  # as a copy without -p would: same bytes, another mtime
    for run in range(2):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="ae_lab.data.image_cache"):
            cache = build(folder, tmp_path / "cache", size=32)
        checked = [r for r in caplog.records if "checking all of" in r.getMessage()]
        assert not cache.built and len(checked) == (1 if run == 0 else 0)
        del cache


# ---- caches in use -------------------------------------------------------------------------------
def _use_cache_until_told(folder, cache_dir, ready, go):
    """A run: holds the cache, trains (waits for ``go``), then reads its test split anew, as
    DataLoader workers do when they unpickle their view."""
    cache = build(folder, cache_dir, size=32)
    before = array_of(cache)
    ready.touch()
    wait_until(go.exists, 30, "the word from the test")
    fresh = pickle.loads(pickle.dumps(cache.images(np.arange(cache.shape[0]))))
    return np.array_equal(np.asarray(fresh), before), str(cache.array_path)


@needs_fork
def test_a_cache_in_use_elsewhere_survives_a_rebuild_and_goes_once_unused(folder, tmp_path, caplog):
    cache_dir = tmp_path / "cache"
    ready, go = tmp_path / "ready", tmp_path / "go"
    run = Child(_use_cache_until_told, folder, cache_dir, ready, go)
    wait_until(ready.exists, 30, "the run to hold its cache")
    old = next(cache_dir.glob("*.json"))
    write_solid(folder / "000099.jpg", (9, 9, 9))  # another run sees a new file and rebuilds
    with caplog.at_level(logging.INFO, logger="ae_lab.data.image_cache"):
        new = build(folder, cache_dir, size=32)
    assert new.built and old.exists() and old.with_suffix(".u8").exists()
    assert any("in use by another process" in r.getMessage() for r in caplog.records)
    go.touch()
    same, used = run.value(timeout=30)
    assert same and used == str(old.with_suffix(".u8"))  # its test split is what it trained on
    assert not build(folder, cache_dir, size=32).built  # a reuse, with the lock free: tidies up
    assert not old.exists() and not old.with_suffix(".u8").exists()
    assert names_in(cache_dir) == sorted([new.array_path.name, new.manifest_path.name])


def test_a_cache_held_in_this_process_is_not_removed_either(folder, tmp_path):
    cache_dir = tmp_path / "cache"
    held = build(folder, cache_dir, size=32)
    write_solid(folder / "000099.jpg", (9, 9, 9))
    new = build(folder, cache_dir, size=32)
    assert new.built and held.array_path.exists() and held.manifest_path.exists()
    assert array_of(held).shape[0] == 8
    old = held.array_path
    del held
    gc.collect()
    build(folder, cache_dir, size=32)
    assert not old.exists()


# ---- interrupted and stuck builds ----------------------------------------------------------------
def test_interrupted_serial_build_leaves_nothing_behind(folder, tmp_path, monkeypatch):
    real = decode.decode_image
    calls = []

    def interrupted(path, crop, size):
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(path, crop, size)

    monkeypatch.setattr(decode, "decode_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build(folder, tmp_path / "cache", size=32)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [LOCK_NAME]
    monkeypatch.setattr(decode, "decode_image", real)
    cache = build(folder, tmp_path / "cache", size=32)
    assert cache.built and cache.shape[0] == 8


@needs_fork
def test_a_build_waiting_for_a_stuck_builder_gives_up_within_its_bound(
    folder, tmp_path, slow_decode
):
    cache_dir = tmp_path / "cache"
    stuck = Child(build, folder, cache_dir, size=32, workers=2)
    workers = slow_decode.wait_for_workers(2, besides=stuck.pid)
    os.kill(stuck.pid, signal.SIGSTOP)  # alive, holding the lock, making no progress
    try:
        waiter = Child(build, folder, cache_dir, size=32, wait_s=1)
        status, error = waiter.result(timeout=15)
    finally:
        stuck.kill()
        kill_all(workers)
    assert status == "error" and error.startswith("UserError: gave up waiting")
    assert f"kill {stuck.pid}" in error and "data.cache_wait_s" in error


# ---- builds side by side, and other people's files -----------------------------------------------
def _built(folder, cache_dir):
    return build(folder, cache_dir, size=32).built


@needs_fork
def test_concurrent_processes_build_once(folder, tmp_path):
    children = [Child(_built, folder, tmp_path / "cache") for _ in range(2)]
    assert sorted(child.value(timeout=60) for child in children) == [False, True]


def test_stale_temp_files_are_removed_and_foreign_files_kept(folder, tmp_path):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    stale = [
        cache_dir / "faces-64x64-0123456789abcdef.u8.tmp-4242-0badcafe",
        cache_dir / "x.json.tmp-7-12345678",
    ]
    foreign = {
        "notes.txt": "mine",
        "data.u8": "mine too",
        "other.json": json.dumps({"format": "not ours", "source": str(folder)}),
        "data.u8.tmp": "not our pattern",
    }
    for path in stale:
        path.write_bytes(b"half a build")
    for name, text in foreign.items():
        (cache_dir / name).write_text(text)
    first = build(folder, cache_dir, size=32)
    old = first.array_path
    del first
    write_solid(folder / "new.jpg", (1, 2, 3))
    build(folder, cache_dir, size=32)  # supersedes the first
    assert not any(path.exists() for path in stale)
    assert not old.exists()
    assert {name: (cache_dir / name).read_text() for name in foreign} == foreign
