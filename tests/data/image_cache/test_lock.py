"""The build lock: held by one process (never by its children), waited for within a bound, taken
over when its holder dies."""

from __future__ import annotations

import logging
import os
import threading
import time

import pytest

from ae_lab.data.image_cache import LOCK_NAME, BuildLock
from ae_lab.data.image_cache import lock as lock_module
from ae_lab.data.image_cache.lock import build_lock_if_free
from ae_lab.errors import UserError
from tests.helpers.image_cache import Child, alive, build, kill_all, needs_fork, wait_until


def _hold(cache_dir, ready, seconds, progress_every=None, temp=None, fork_a_sleeper=None):
    """Take the lock as a build would, say so (``ready``), then keep it for ``seconds``."""
    lock = BuildLock(cache_dir, "building test-cache").acquire()
    if temp is not None:
        temp.write_bytes(b"half a build")
    if fork_a_sleeper is not None:  # a child, as a decode worker is, that outlives us
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        fork_a_sleeper.write_text(str(pid))
    ready.touch()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if progress_every:
            lock.progress()
        time.sleep(progress_every or 0.05)
    lock.release()
    return True


@pytest.fixture
def cache_dir(tmp_path):
    (tmp_path / "cache").mkdir()
    return tmp_path / "cache"


@needs_fork
def test_a_child_of_the_holder_does_not_hold_the_lock(cache_dir, tmp_path):
    ready, sleeper = tmp_path / "ready", tmp_path / "sleeper"
    holder = Child(_hold, cache_dir, ready, 60, fork_a_sleeper=sleeper)
    wait_until(ready.exists, 10, "the holder")
    orphan = int(sleeper.read_text())
    try:
        assert not BuildLock(cache_dir, "test").try_acquire()
        holder.kill()
        assert alive(orphan)  # its child lives on ...
        lock = BuildLock(cache_dir, "test")
        wait_until(lock.try_acquire, 2, "the lock to be free")  # ... and holds nothing
        lock.release()
    finally:
        kill_all({orphan})


@needs_fork
def test_a_waiter_gives_up_after_its_bound_and_says_what_to_do(cache_dir, tmp_path, caplog):
    ready = tmp_path / "ready"
    holder = Child(_hold, cache_dir, ready, 60)
    wait_until(ready.exists, 10, "the holder")
    started = time.monotonic()
    try:
        with caplog.at_level(logging.INFO), pytest.raises(UserError) as error:
            BuildLock(cache_dir, "building mine").acquire(wait_s=1)
    finally:
        holder.kill()
    assert 1 <= time.monotonic() - started < 4
    message = str(error.value)
    assert str(cache_dir / LOCK_NAME) in message and f"pid {holder.pid}" in message
    assert "data.cache_wait_s" in message and f"kill {holder.pid}" in message
    assert "\n" not in message
    waiting = [r.getMessage() for r in caplog.records if "waiting for" in r.getMessage()]
    assert len(waiting) == 1 and f"pid {holder.pid}" in waiting[0] and "after 1 s" in waiting[0]
    assert "building test-cache" in waiting[0]


@needs_fork
def test_a_waiter_waits_while_the_holder_makes_progress(cache_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(lock_module, "_TOUCH_EVERY_S", 0.1)
    ready = tmp_path / "ready"
    holder = Child(_hold, cache_dir, ready, 1.5, progress_every=0.05)
    wait_until(ready.exists, 10, "the holder")
    started = time.monotonic()
    with BuildLock(cache_dir, "mine").acquire(wait_s=0.5):
        waited = time.monotonic() - started
    assert holder.value(timeout=10)
    assert waited > 1.0  # twice its bound: the holder kept moving


@needs_fork
def test_the_lock_of_a_killed_holder_is_taken_over_at_once(cache_dir, tmp_path, caplog):
    ready, temp = tmp_path / "ready", cache_dir / "x-0123456789abcdef.u8.tmp-99999-0badcafe"
    holder = Child(_hold, cache_dir, ready, 60, temp=temp)
    wait_until(ready.exists, 10, "the holder")
    threading.Timer(0.5, holder.kill).start()
    started = time.monotonic()
    with caplog.at_level(logging.INFO):
        lock = BuildLock(cache_dir, "mine").acquire(wait_s=30)
    lock.release()
    assert time.monotonic() - started < 5
    assert lock.previous is not None and lock.previous.pid == holder.pid
    assert any("did not finish building test-cache" in r.getMessage() for r in caplog.records)


@needs_fork
def test_a_build_after_a_killed_holder_removes_its_temporary_files(cache_dir, tmp_path, folder):
    ready, temp = tmp_path / "ready", cache_dir / "x-0123456789abcdef.u8.tmp-99999-0badcafe"
    holder = Child(_hold, cache_dir, ready, 60, temp=temp)
    wait_until(ready.exists, 10, "the holder")
    holder.kill()
    assert temp.exists()
    assert build(folder, cache_dir, size=16, wait_s=5).built
    assert not temp.exists()


def test_threads_of_one_process_take_turns(cache_dir):
    first = BuildLock(cache_dir, "first").acquire()
    assert not BuildLock(cache_dir, "second").try_acquire()
    with build_lock_if_free(cache_dir, "third") as lock:
        assert lock is None
    taken = []
    other = threading.Thread(target=lambda: taken.append(BuildLock(cache_dir, "t").acquire(5)))
    other.start()
    time.sleep(0.3)
    assert not taken
    first.release()
    other.join(5)
    assert taken and taken[0].held
    taken[0].release()


@needs_fork
def test_the_lock_file_names_its_holder_and_is_emptied_on_release(cache_dir):
    path = cache_dir / LOCK_NAME
    lock = BuildLock(cache_dir, "building x").acquire()
    text = Child(path.read_text).value(timeout=10)  # here, closing a descriptor would drop it
    assert f'"pid": {os.getpid()}' in text and "building x" in text
    assert not Child(lambda: BuildLock(cache_dir, "other").try_acquire()).value(timeout=10)
    lock.release()
    assert path.read_text() == ""
    again = BuildLock(cache_dir, "y").acquire()
    assert again.previous is None  # its last holder let go properly
    again.release()
