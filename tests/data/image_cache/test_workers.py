"""The decode workers of a build: the same pixels as a serial build, and never a worker that
outlives its build, holds its lock, or prints a traceback when the build is interrupted or killed."""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest

from ae_lab.data.image_cache import decode, store
from ae_lab.data.image_cache import workers as workers_module
from ae_lab.errors import RunFailed
from tests.helpers.faces import add_bad_files
from tests.helpers.image_cache import (
    Child,
    alive,
    array_of,
    build,
    kill_all,
    names_in,
    needs_fork,
    wait_until,
)


def test_parallel_build_gives_the_same_array(folder, tmp_path):
    add_bad_files(folder)
    serial = build(folder, tmp_path / "serial", crop=148, size=32, workers=1)
    parallel = build(folder, tmp_path / "parallel", crop=148, size=32, workers=2)
    assert parallel.files == serial.files and parallel.skipped == serial.skipped
    assert np.array_equal(array_of(parallel), array_of(serial))


def test_interrupted_parallel_build_stops_its_workers_and_leaves_nothing(
    folder, tmp_path, monkeypatch, slow_decode
):
    """Ctrl-C while the builder waits for its workers (the KeyboardInterrupt comes back from a
    worker here, as it would arise in the builder's wait)."""
    slow = slow_decode

    def interrupted(path, crop, size):
        if path.endswith("000003.jpg"):
            raise KeyboardInterrupt
        return slow(path, crop, size)

    monkeypatch.setattr(decode, "decode_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build(folder, tmp_path / "cache", size=32, workers=2)
    workers = slow.pids() - {os.getpid()}
    assert len(workers) == 2
    wait_until(lambda: not any(alive(p) for p in workers), 5, "the workers to end")
    assert names_in(tmp_path / "cache") == []
    slow.open_gate()
    monkeypatch.setattr(decode, "decode_image", slow.real)
    assert build(folder, tmp_path / "cache", size=32, workers=2, wait_s=1).built


def test_a_worker_killed_mid_build_fails_the_build_plainly(folder, tmp_path, slow_decode):
    """The OOM killer, say, takes one decode worker: a RunFailed that says what to do."""
    killer = threading.Thread(
        target=lambda: os.kill(min(slow_decode.wait_for_workers(1, besides=os.getpid())), 9)
    )
    killer.start()
    with pytest.raises(RunFailed, match="decode worker ended unexpectedly.*cache_workers=1"):
        build(folder, tmp_path / "cache", size=32, workers=2)
    killer.join()
    assert names_in(tmp_path / "cache") == []
    slow_decode.open_gate()
    assert build(folder, tmp_path / "cache", size=32, workers=2, wait_s=1).built


@needs_fork
def test_ctrl_c_in_a_terminal_stops_the_build_without_a_traceback(
    folder, tmp_path, slow_decode, capfd
):
    """SIGINT to the whole process group, as Ctrl-C in a terminal sends it."""
    cache_dir = tmp_path / "cache"
    builder = Child(build, folder, cache_dir, size=32, workers=2, own_group=True)
    workers = slow_decode.wait_for_workers(2, besides=builder.pid)
    os.killpg(builder.pid, signal.SIGINT)
    try:
        assert builder.result(timeout=10)[0] == "interrupted"
        wait_until(lambda: not any(alive(p) for p in workers), 5, "the workers to end")
    finally:
        kill_all(workers)
    assert "Traceback" not in capfd.readouterr().err
    assert names_in(cache_dir) == []


@needs_fork
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_killed_build_leaves_no_cache_its_workers_die_and_the_next_build_completes(
    folder, tmp_path, slow_decode, signum
):
    cache_dir = tmp_path / "cache"
    builder = Child(build, folder, cache_dir, size=32, workers=2)
    workers = slow_decode.wait_for_workers(2, besides=builder.pid)
    os.kill(builder.pid, signum)  # the builder only, as `kill`, `timeout` or the OOM killer do
    try:
        assert builder.result(timeout=10)[0] == "died"
        wait_until(lambda: not any(alive(p) for p in workers), 5, "the workers to die with it")
    finally:
        kill_all(workers)
    left = names_in(cache_dir)
    assert left and all(store.TEMP_RE.match(name) for name in left)  # nothing under a real name
    slow_decode.open_gate()
    shape = Child(lambda: build(folder, cache_dir, size=32, workers=2).shape).value(timeout=30)
    assert shape == (8, 3, 32, 32)
    assert not any(".tmp-" in name for name in names_in(cache_dir))


@needs_fork
def test_orphaned_workers_do_not_hold_the_build_lock(folder, tmp_path, slow_decode, monkeypatch):
    """Workers that outlive their builder (were the kernel not to kill them) hold nothing."""
    monkeypatch.setattr(workers_module, "die_with_parent", lambda: None)
    cache_dir = tmp_path / "cache"
    builder = Child(build, folder, cache_dir, size=32, workers=2)
    workers = slow_decode.wait_for_workers(2, besides=builder.pid)
    builder.kill()
    try:
        assert all(alive(p) for p in workers)
        slow_decode.open_gate()
        again = Child(lambda: build(folder, cache_dir, size=32, wait_s=2).built)
        assert again.value(timeout=20)
    finally:
        kill_all(workers)
