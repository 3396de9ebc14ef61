"""A build stopped early, by Ctrl-C, SIGTERM or a disk that fills up, ends its process promptly and
without a traceback: the process never hangs at exit.

It was a race (a decode worker killed in the middle of sending its result left the process pool's
manager thread waiting forever, and Python's exit waits for that thread; a signal that came while
a worker was forked printed a traceback and was lost), so each way of stopping is tried many
times, in a fresh process, at random points of a build with 2 workers."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ae_lab.data.image_cache import store
from tests.helpers.faces import make_plain_jpeg_folder
from tests.helpers.image_cache import needs_fork

ROOT = Path(__file__).resolve().parents[3]
TRIES = 10  # per way of stopping: the old code hung in about one try in ten
EXIT_S = 20.0  # a process that has not ended this long after its stop hangs
IMAGES = 1000  # a build long enough to stop in the middle of
# as the CLI runs a build: signals handled as in a run, errors reported as the CLI does
BUILDER = """
import faulthandler, resource, signal, sys
from ae_lab.data.image_cache import Preprocess, get_image_cache
from ae_lab.errors import UserError, exit_with
from ae_lab.run.interrupts import handling_signals

faulthandler.register(signal.SIGUSR1, all_threads=True)  # where it hangs, should it hang
folder, cache_dir, file_limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
if file_limit:  # the disk fills up: the kernel refuses writes past file_limit bytes
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, hard))
try:
    with handling_signals():
        get_image_cache(folder, cache_dir, Preprocess.from_config(None, 64), workers=2)
        print("finished", flush=True)
except (KeyboardInterrupt, UserError) as error:
    exit_with(error)
"""


@pytest.fixture(scope="module")
def many_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("early_stop") / "src"
    make_plain_jpeg_folder(folder, n=IMAGES)
    return folder


def _decoding_started(cache_dir: Path) -> bool:
    """Whether the build has opened its temporary array (its workers are being started)."""
    return cache_dir.is_dir() and any(store.TEMP_RE.match(p.name) for p in cache_dir.iterdir())


def _build_and_stop(folder: Path, cache_dir: Path, how: str, rng: random.Random) -> str:
    """Start a build in a new process (its own process group, as in a terminal), stop it ``how``;
    how it ended: ``stopped`` (early) or ``finished`` (before the stop came)."""
    file_limit = rng.randrange(100_000, 6_000_000) if how == "full disk" else 0
    child = subprocess.Popen(
        [sys.executable, "-c", BUILDER, str(folder), str(cache_dir), str(file_limit)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        if how != "full disk":
            deadline = time.monotonic() + 60
            while not _decoding_started(cache_dir) and child.poll() is None:
                assert time.monotonic() < deadline, "the build did not start"
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.15))
            if how == "ctrl-c":
                os.killpg(child.pid, signal.SIGINT)  # the whole group, as a terminal sends it
            else:
                child.send_signal(signal.SIGTERM)  # the builder only, as `kill` does
        out, err = child.communicate(timeout=EXIT_S)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGUSR1)  # its threads' stacks, to stderr
        time.sleep(1)
        os.killpg(child.pid, signal.SIGKILL)
        pytest.fail(f"{how}: the process hung at exit:\n{child.communicate()[1][-4000:]}")
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert "Traceback" not in err, err
    if "finished" in out:
        return "finished"
    expected = 2 if how == "full disk" else 130  # a UserError / interrupted, as the CLI exits
    assert child.returncode == expected, f"{how}: exit status {child.returncode}\n{err}"
    return "stopped"


@needs_fork
@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", "full disk"])
def test_a_build_stopped_early_never_hangs_at_exit(many_images, tmp_path, how):
    rng = random.Random(f"{how} {TRIES}")
    outcomes = [
        _build_and_stop(many_images, tmp_path / f"cache{i}", how, rng) for i in range(TRIES)
    ]
    assert outcomes.count("stopped") >= TRIES // 2, outcomes  # most stops came mid-build
