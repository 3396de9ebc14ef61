"""The files on disk: checksums and what a check reads, holding a cache, removing only what nobody
holds."""

from __future__ import annotations

import json
import os
import zlib

import pytest

from ae_lab import atomic
from ae_lab.data.image_cache import CacheGone, CacheLease, store
from tests.helpers.image_cache import Child, build, needs_fork, wait_until


def _array(tmp_path, size, name="a.u8"):
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


def _manifest_for(path, shape):
    with open(path, "rb") as f:
        return {"shape": list(shape), "checksum": store.checksums(f.fileno(), zlib.crc32(f.read()))}


def _flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([255 - byte[0]]))


# ---- checksums -----------------------------------------------------------------------------------
def test_the_sampled_blocks_cover_both_ends_and_are_spread_evenly():
    blocks = store._sample_blocks(10_000_000, 64, 65536)
    assert len(blocks) == 64 and blocks[0] == (0, 65536)
    assert blocks[-1] == (10_000_000 - 65536, 65536)
    gaps = {b[0] - a[0] for a, b in zip(blocks, blocks[1:], strict=False)}
    assert max(gaps) - min(gaps) <= 1
    assert store._sample_blocks(1000, 64, 65536) == [(0, 1000)]  # small: all of it


def test_check_reads_the_samples_each_time_and_all_of_it_once_after_a_change(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "SAMPLE_BLOCKS", 4)
    monkeypatch.setattr(store, "SAMPLE_BYTES", 16)
    path = _array(tmp_path, 4096)
    manifest = _manifest_for(path, (1, 1, 64, 64))
    full_checks = []
    real_full = store.full_crc
    monkeypatch.setattr(store, "full_crc", lambda fd, n: full_checks.append(n) or real_full(fd, n))
    with open(path, "rb") as f:
        assert store.check(f.fileno(), manifest, "a") == (None, False)
    assert full_checks == []  # as built: the samples only
    os.utime(path, ns=(1, 10**18))  # the same bytes, touched
    with open(path, "rb") as f:
        assert store.check(f.fileno(), manifest, "a") == (None, True)
    assert full_checks == [4096]
    _flip(path, 2000)  # between the sampled blocks, with a write (a new mtime)
    with open(path, "rb") as f:
        problem, _ = store.check(f.fileno(), manifest, "a")
    assert problem == "its checksum differs from its manifest's"


def test_check_finds_a_wrong_size_and_sampled_damage_without_reading_it_all(tmp_path, monkeypatch):
    path = _array(tmp_path, 1 << 20)
    manifest = _manifest_for(path, (16, 1, 256, 256))
    monkeypatch.setattr(store, "full_crc", lambda fd, n: pytest.fail("read the whole file"))
    before = path.stat()
    _flip(path, (1 << 20) - 1)  # the last byte, and put the mtime back
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    with open(path, "rb") as f:
        assert "sampled blocks" in store.check(f.fileno(), manifest, "a")[0]
    with open(path, "ab") as f:
        f.write(b"x")
    with open(path, "rb") as f:
        assert "bytes instead of" in store.check(f.fileno(), manifest, "a")[0]


def test_a_built_cache_records_its_checksums(folder, tmp_path):
    cache = build(folder, tmp_path / "cache", size=16)
    manifest = json.loads(cache.manifest_path.read_text())
    data = cache.array_path.read_bytes()
    assert manifest["checksum"]["full"] == zlib.crc32(data)
    assert manifest["checksum"]["checked"] == store.stamp(cache.array_path.stat())


# ---- holding and removing ------------------------------------------------------------------------
def test_a_held_cache_is_not_removed_and_one_let_go_is(tmp_path):
    path = _array(tmp_path, 100)
    manifest = path.with_suffix(".json")
    manifest.write_text("{}")
    lease = CacheLease(path)
    assert not store.remove_unused(manifest, path)
    assert path.exists() and manifest.exists()
    lease.close()
    assert store.remove_unused(manifest, path, dry_run=True) and path.exists()
    assert store.remove_unused(manifest, path)
    assert not path.exists() and not manifest.exists()


def _hold_until(path, ready, go):
    lease = CacheLease(path)
    ready.touch()
    wait_until(go.exists, 10, "the word from the test")
    lease.close()
    return True


@needs_fork
def test_a_cache_held_by_another_process_is_not_removed(tmp_path):
    path = _array(tmp_path, 100)
    ready, go = tmp_path / "ready", tmp_path / "go"
    holder = Child(_hold_until, path, ready, go)
    wait_until(ready.exists, 10, "the holder")
    assert not store.remove_unused(path.with_suffix(".json"), path) and path.exists()
    go.touch()
    assert holder.value(timeout=10)
    assert store.remove_unused(path.with_suffix(".json"), path) and not path.exists()


def test_a_lease_is_let_go_when_nothing_refers_to_it(tmp_path):
    path = _array(tmp_path, 100)
    lease = CacheLease(path)
    del lease
    assert store.remove_unused(path.with_suffix(".json"), path)


def test_a_cache_that_is_gone_being_removed_or_replaced_cannot_be_held(tmp_path, monkeypatch):
    with pytest.raises(CacheGone, match="gone"):
        CacheLease(tmp_path / "missing.u8")
    path = _array(tmp_path, 100)
    with open(path, "rb") as remover:
        store.fcntl.flock(remover, store.fcntl.LOCK_EX)  # remove_unused holds it so
        with pytest.raises(CacheGone, match="being removed"):
            CacheLease(path)
    real_flock = store.fcntl.flock

    def replaced_meanwhile(file, how):  # a rebuild renames another file onto the path
        os.replace(_array(tmp_path, 100, "b.u8"), path)
        real_flock(file, how)

    monkeypatch.setattr(store.fcntl, "flock", replaced_meanwhile)
    with pytest.raises(CacheGone, match="removed or replaced"):
        CacheLease(path)


def test_temp_files_are_recognised_by_their_pattern_only(tmp_path):
    ours = [
        atomic.temp_name(tmp_path / "a-0123456789abcdef.u8"),
        atomic.temp_name(tmp_path / "a.json"),
        tmp_path / "a-0123456789abcdef.u8.tmp-4242-0badcafe",  # an earlier version's name
    ]
    theirs = [tmp_path / "a.u8.tmp", tmp_path / "notes.tmp-1-2", tmp_path / "a.u8"]
    for path in ours + theirs:
        path.write_text("x")
    assert sorted(store.remove_temp_files(tmp_path)) == sorted(ours)
    assert all(p.exists() for p in theirs)
