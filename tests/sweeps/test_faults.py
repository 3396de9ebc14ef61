"""A joblib sweep survives its own faults (ae_lab/sweeps/launcher.py), each case through train.py
as a user runs it: a stop (SIGTERM, Ctrl-C, ``timeout``) stops the jobs, which save ``last.ckpt``,
and ends with the summary, one ``error:`` line and the commands that finish the rest; a job killed
with ``kill -9`` is recorded as failed while the others finish; and no process of a sweep outlives
it, whichever way it ends."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import REPO
from tests.helpers.slow import FITTING

#: Set in a sweep's environment: every process of the sweep inherits it, so any left alive after
#: the sweep is found in /proc, whoever its parent is by then.
MARK = "AE_LAB_TEST_SWEEP"
#: How long a stopped sweep may take to end, and its processes to be gone after it.
STOP_BOUND_S, GONE_BOUND_S = 60.0, 10.0

TINY = [
    "callbacks=none",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "hydra/launcher=joblib",
    "hydra.launcher.n_jobs=2",
]


class Sweep:
    """``train.py -m ...`` in a session of its own (so it can be signalled as a terminal signals
    its process group), its output in files, its processes marked."""

    started: list[Sweep] = []

    def __init__(self, tmp_path: Path, *args: str, prefix: tuple[str, ...] = ()) -> None:
        if not Path("/proc/self/environ").exists():
            pytest.skip("finds a sweep's processes in /proc (Linux)")
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.log_dir, self.mark = tmp_path, uuid.uuid4().hex
        self.out, self.err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", MARK: self.mark}
        with self.out.open("w") as out, self.err.open("w") as err:
            self.process = subprocess.Popen(
                [*prefix, sys.executable, str(REPO / "train.py"), "-m", *args,
                 f"paths.log_dir={tmp_path}"],
                cwd=REPO, env=env, stdout=out, stderr=err, start_new_session=True,
            )  # fmt: skip
        Sweep.started.append(self)

    @property
    def stderr(self) -> str:
        return self.err.read_text()

    def folder(self) -> Path | None:
        found = list((self.log_dir / "train" / "multiruns").glob("*"))
        return found[0] if found else None

    def jobs_fitting(self) -> list[Path]:
        sweep = self.folder()
        return sorted(sweep.glob(f"*/{FITTING}")) if sweep else []

    def wait_until(self, ready: Callable[[], bool], bound: float = 240.0) -> None:
        deadline = time.monotonic() + bound
        while not ready():
            assert self.process.poll() is None, f"the sweep ended first:\n{self.stderr[-3000:]}"
            assert time.monotonic() < deadline, f"not ready after {bound} s:\n{self.stderr[-3000:]}"
            time.sleep(0.2)

    def wait(self, bound: float) -> int:
        """The sweep's exit status, which must come within ``bound`` seconds (a hang fails)."""
        try:
            return self.process.wait(timeout=bound)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"the sweep did not end within {bound} s:\n{self.stderr[-3000:]}")

    def rows(self) -> dict[str, dict[str, str]]:
        with (self.folder() / "summary.csv").open() as file:
            return {row["job"]: row for row in csv.DictReader(file)}

    def assert_nothing_left(self) -> None:
        """No process of the sweep alive (its jobs, their workers, anything they started)."""
        deadline = time.monotonic() + GONE_BOUND_S
        while left := _marked(self.mark):
            if time.monotonic() > deadline:
                for pid in left:  # (the test's own leftovers: not for the next test to meet)
                    _kill(pid)
                pytest.fail(f"processes of the sweep left alive: {left}")
            time.sleep(0.2)


def _marked(mark: str) -> dict[int, str]:
    """The live processes whose environment holds ``MARK=mark``, with their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"{MARK}={mark}".encode() not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue  # a zombie runs nothing; its parent reaps it
            found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _finish_lines(stderr: str) -> dict[str, str]:
    """The commands a stopped sweep prints to finish its jobs, by job number."""
    return {
        line.rsplit("# job ", 1)[1]: line.strip()
        for line in stderr.splitlines()
        if line.startswith("  ") and "train.py" in line and "# job " in line
    }


@pytest.fixture(autouse=True)
def no_sweep_left():
    """Whatever a test's outcome, no process of its sweeps outlives it (a failing test must not
    leave jobs training for the next one)."""
    yield
    while Sweep.started:
        sweep = Sweep.started.pop()
        if sweep.process.poll() is None:
            sweep.process.kill()
            sweep.process.wait()
        for pid in _marked(sweep.mark):
            _kill(pid)


# ---- a stop: SIGTERM, Ctrl-C, timeout ------------------------------------------------------------
def _sigterm_to_the_sweep(sweep: Sweep) -> None:
    sweep.process.send_signal(signal.SIGTERM)


def _ctrl_c_in_its_terminal(sweep: Sweep) -> None:
    os.killpg(sweep.process.pid, signal.SIGINT)  # a terminal signals the whole foreground group


STOPS = [  # (how, the signal, when: as soon as that many jobs are fitting)
    (_sigterm_to_the_sweep, signal.SIGTERM, 2),
    (_ctrl_c_in_its_terminal, signal.SIGINT, 1),
    ("timeout", signal.SIGTERM, None),  # `timeout 20 train.py ...`: wherever the sweep is by then
]


@pytest.mark.slow
def test_a_stopped_sweep_stops_its_jobs_summarises_them_and_says_how_to_finish(
    tmp_path, mnist_root
):
    """Three jobs, two at a time, each slow enough to be caught training; the sweep is stopped
    three ways, at different points (the loop is bounded: one run each)."""
    for n, (stop, signum, fitting) in enumerate(STOPS):
        prefix = ("timeout", "--preserve-status", "20") if stop == "timeout" else ()
        sweep = Sweep(
            tmp_path / str(n), "data.batch_size=8,16,32", *TINY, f"data.root={mnist_root}",
            "trainer.max_epochs=1000", "+callbacks.slow._target_=tests.helpers.slow.Slow",
            prefix=prefix,
        )  # fmt: skip
        if stop != "timeout":
            sweep.wait_until(lambda s=sweep, k=fitting: len(s.jobs_fitting()) >= k)
            stop(sweep)
        code = sweep.wait(STOP_BOUND_S + (20 if stop == "timeout" else 0))
        stderr = sweep.stderr
        assert code == 128 + signum, stderr[-3000:]
        assert "Traceback" not in stderr, stderr[-3000:]
        (error,) = _error_lines(stderr)
        name = "Ctrl-C (SIGINT)" if signum == signal.SIGINT else "SIGTERM"
        assert error.startswith(f"error: the sweep was stopped by {name}: of its 3 jobs")
        rows = sweep.rows()
        assert sorted(rows) == ["0", "1", "2"]
        finish = _finish_lines(stderr)
        for job, row in rows.items():
            folder = sweep.folder() / job
            assert row["status"] in ("interrupted", "not run"), row
            assert "train.py" in finish[job]  # each unfinished job: the command that finishes it
            if (folder / "checkpoints" / "last.ckpt").is_file() and row["status"] == "interrupted":
                assert f"ckpt_path={folder / 'checkpoints' / 'last.ckpt'}" in finish[job]
            if row["status"] == "not run":
                assert row["error"].startswith("not started: the sweep was stopped by")
                assert not (folder / "checkpoints").exists() and "ckpt_path=" not in finish[job]
        if fitting is not None:  # caught training: the jobs caught saved their state
            caught = [p.parent.name for p in sweep.jobs_fitting()]
            assert len(caught) >= fitting
            for job in caught:
                assert rows[job]["status"] == "interrupted"
                assert rows[job]["exit_code"] == str(128 + signum)
                saved = sweep.folder() / job / "checkpoints" / "last.ckpt"
                assert f"saved {saved}" in rows[job]["error"] and saved.is_file()
            assert rows["2"]["status"] == "not run"  # never started: the sweep was stopping
        assert (sweep.folder() / "summary.md").is_file() and (
            sweep.folder() / "report.png"
        ).is_file()
        assert not list(sweep.folder().rglob(".*.tmp"))
        sweep.assert_nothing_left()


# ---- a job killed, as the out-of-memory killer kills ---------------------------------------------
@pytest.mark.slow
def test_a_job_killed_with_sigkill_is_recorded_and_the_others_finish(tmp_path, mnist_root):
    """Three jobs, two at a time: job 0 is killed (kill -9) while it trains, job 1 is running
    beside it; both others finish, the sweep names the kill and exits 1."""
    sweep = Sweep(
        tmp_path, "data.batch_size=8,16,32", *TINY, f"data.root={mnist_root}",
        "trainer.max_epochs=1", "+callbacks.slow._target_=tests.helpers.slow.Slow",
        "+callbacks.slow.job=0", "+callbacks.slow.seconds=60",
    )  # fmt: skip
    sweep.wait_until(lambda: (sweep.folder() or tmp_path).joinpath("0", FITTING).is_file())
    worker = int((sweep.folder() / "0" / FITTING).read_text())
    os.kill(worker, signal.SIGKILL)
    code = sweep.wait(240)
    stderr = sweep.stderr
    assert code == 1, stderr[-3000:]
    assert "Traceback" not in stderr and "TerminatedWorkerError" not in stderr, stderr[-3000:]
    rows = sweep.rows()
    assert [rows[j]["status"] for j in ("0", "1", "2")] == ["failed", "completed", "completed"]
    killed = rows["0"]
    assert killed["exit_code"] == "137"
    assert "killed by SIGKILL (as the out-of-memory killer does)" in killed["error"]
    for job in ("1", "2"):
        assert float(rows[job]["val/loss"]) > 0
        assert (sweep.folder() / job / "metrics.json").is_file()
    assert _error_lines(stderr)[-1].startswith(
        "error: 1 of 3 jobs failed, the others finished: job 0 (failed): the job's process was "
        "killed by SIGKILL"
    )
    sweep.assert_nothing_left()


# ---- no process outlives a sweep -----------------------------------------------------------------
@pytest.mark.slow
def test_no_worker_outlives_a_sweep_stopped_while_a_worker_is_idle(tmp_path, mnist_root):
    """Three jobs, two at a time: jobs 0 and 1 finish, so one worker is left with nothing to do
    while job 2 trains; then ``timeout`` signals the sweep's process group. Nothing is left
    behind, idle or training; the finished jobs keep their results."""
    sweep = Sweep(
        tmp_path, "trainer.max_epochs=1,2,1000", *TINY, f"data.root={mnist_root}",
        "+callbacks.slow._target_=tests.helpers.slow.Slow", "+callbacks.slow.job=2",
    )  # fmt: skip

    def idle_and_training() -> bool:
        folder = sweep.folder() or tmp_path
        done = all((folder / job / "metrics.json").is_file() for job in ("0", "1"))
        return done and (folder / "2" / FITTING).is_file()

    sweep.wait_until(idle_and_training)
    os.killpg(sweep.process.pid, signal.SIGTERM)  # what `timeout` does when its time is up
    code = sweep.wait(STOP_BOUND_S)
    stderr = sweep.stderr
    assert code == 143, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    rows = sweep.rows()
    assert [rows[j]["status"] for j in ("0", "1")] == ["completed", "completed"]
    assert rows["2"]["status"] == "interrupted", rows["2"]
    assert (sweep.folder() / "2" / "checkpoints" / "last.ckpt").is_file()
    sweep.assert_nothing_left()


# ---- the launcher is put in place ---------------------------------------------------------------
def test_joblib_sweeps_get_the_supervised_launcher_and_others_are_left_alone():
    from ae_lab.sweeps.callbacks import PLUGIN_LAUNCHER, SUPERVISED_LAUNCHER, SupervisedJobs

    def config(target: str):
        return OmegaConf.create(
            {"hydra": {"launcher": {"_target_": target, "n_jobs": 2},
                       "overrides": {"hydra": ["hydra/launcher=joblib"], "task": []}}}
        )  # fmt: skip

    joblib = config(PLUGIN_LAUNCHER)
    SupervisedJobs._supervise(joblib)
    assert joblib.hydra.launcher._target_ == SUPERVISED_LAUNCHER
    # the jobs compose their config from these: they see the launcher that ran them
    assert joblib.hydra.overrides.hydra[-1] == f"hydra.launcher._target_={SUPERVISED_LAUNCHER}"
    other = config("hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher")
    SupervisedJobs._supervise(other)
    assert other.hydra.launcher._target_.endswith("LocalLauncher")
    assert list(other.hydra.overrides.hydra) == ["hydra/launcher=joblib"]
