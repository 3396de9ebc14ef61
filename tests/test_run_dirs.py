"""Run and sweep directories are claimed atomically (ae_lab/run_dir.py): racing claims get distinct
directories, a directory the user named is refused when it holds or is claimed by a run, and a run
refused before it started leaves nothing behind."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest

from ae_lab.errors import UserError
from ae_lab.run import run_dir
from tests.conftest import REPO, TINY_RUN
from tests.test_cli import train


def _claim(path: str) -> str:
    return str(run_dir.claim_run_dir(path, auto=True))


def test_racing_claims_of_one_time_stamp_get_distinct_directories(tmp_path):
    stamp = tmp_path / "runs" / "2024-01-01_00-00-00"
    with multiprocessing.get_context("fork").Pool(6) as pool:
        claimed = pool.map(_claim, [str(stamp)] * 12)
    assert len(set(claimed)) == 12
    assert sorted(claimed) == sorted([str(stamp)] + [f"{stamp}_{n}" for n in range(1, 12)])
    assert all((Path(p) / ".hydra").is_dir() for p in claimed)


def test_a_taken_time_stamp_gets_the_next_suffix(tmp_path):
    stamp = tmp_path / "stamp"
    (stamp / "checkpoints").mkdir(parents=True)
    (stamp / "checkpoints" / "last.ckpt").write_text("an older run")
    (tmp_path / "stamp_1").write_text("a file in the way")
    assert run_dir.claim_run_dir(stamp, auto=True) == tmp_path / "stamp_2"
    assert sorted(p.name for p in stamp.iterdir()) == ["checkpoints"]


def test_a_named_directory_is_claimed_when_new_or_empty(tmp_path):
    assert run_dir.claim_run_dir(tmp_path / "new" / "run", auto=False) == tmp_path / "new" / "run"
    (tmp_path / "empty").mkdir()
    assert run_dir.claim_run_dir(tmp_path / "empty", auto=False) == tmp_path / "empty"
    assert (tmp_path / "empty" / ".hydra").is_dir()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"metrics.json": "{}"}, "already holds a run"),
        ({"checkpoints/last.ckpt": "x"}, "already holds a run"),
        ({".hydra/config.yaml": "x"}, "was already used by another run"),
    ],
)
def test_a_named_directory_that_holds_or_is_claimed_by_a_run_is_refused(tmp_path, content, message):
    for name, text in content.items():
        (tmp_path / "run" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "run" / name).write_text(text)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(UserError, match=message):
        run_dir.claim_run_dir(tmp_path / "run", auto=False)
    assert sorted(tmp_path.rglob("*")) == before


def test_a_run_directory_that_cannot_be_made_is_a_short_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match=r"hydra.run.dir=.*file is an existing file"):
        run_dir.claim_run_dir(tmp_path / "file", auto=False)
    with pytest.raises(UserError, match=r"cannot create hydra.run.dir=.*Not a directory"):
        run_dir.claim_run_dir(tmp_path / "file" / "runs" / "x", auto=True)


def test_release_removes_only_what_hydra_wrote_before_the_run(tmp_path):
    path = run_dir.claim_run_dir(tmp_path / "run", auto=False)
    (path / ".hydra" / "config.yaml").write_text("x")
    (path / "train.log").write_text("x")
    assert run_dir.release(path) and not path.exists()
    path = run_dir.claim_run_dir(tmp_path / "run", auto=False)
    (path / "metrics.json").write_text("{}")
    assert not run_dir.release(path) and (path / ".hydra").is_dir()
    assert not run_dir.release(tmp_path / "never-claimed")


def test_a_sweep_directory_that_holds_anything_is_taken(tmp_path):
    sweep = tmp_path / "sweep"
    assert run_dir.claim_sweep_dir(sweep, auto=False) == sweep
    assert (sweep / "multirun.yaml").is_file()
    with pytest.raises(UserError, match="already holds a sweep"):
        run_dir.claim_sweep_dir(sweep, auto=False)
    assert run_dir.claim_sweep_dir(sweep, auto=True) == tmp_path / "sweep_1"


# ---- through train.py ----------------------------------------------------------------------------
@pytest.mark.slow
def test_two_runs_started_in_the_same_second_get_a_directory_each(tmp_path, mnist_root):
    # A time stamp by the day, so that both runs surely want the same directory.
    args = [REPO / "train.py", "callbacks=none", f"data.root={mnist_root}", *TINY_RUN[:6],
            f"paths.log_dir={tmp_path}", "hydra.run.dir=${paths.log_dir}/runs/${now:%Y-%m-%d}"]  # fmt: skip
    runs = [
        subprocess.Popen(
            [sys.executable, *map(str, args)],
            cwd=tmp_path,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for _ in range(2)
    ]
    for process in runs:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
    first, second = sorted((tmp_path / "runs").iterdir())
    assert second.name == f"{first.name}_1"
    for folder in (first, second):
        assert (folder / "checkpoints" / "last.ckpt").is_file()
        assert json.loads((folder / "metrics.json").read_text())["test/loss"] > 0
        assert (folder / ".hydra" / "hydra.yaml").read_text().count(str(folder)) >= 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["experiment=vae_mnsit"], "Could not find 'experiment/vae_mnsit'. Available options"),
        (["data.batch_size=0"], "data.batch_size=0: must be >= 1"),
        (["data=celeba", "data.size=big"], "size must be null, an int or [height, width]"),
    ],
)
def test_a_bad_setting_ends_with_one_line_exit_2_and_no_directory(tmp_path, args, message):
    run = tmp_path / "run"
    result = train(*args, "data.download=false", f"data.root={tmp_path}", f"hydra.run.dir={run}")
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert not run.exists()


def test_a_run_directory_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("mine\n")
    result = train(f"hydra.run.dir={tmp_path / 'file'}")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "is an existing file" in result.stderr
    assert (tmp_path / "file").read_text() == "mine\n"


@pytest.mark.slow
def test_a_bug_keeps_its_traceback_and_exits_1(tmp_path, mnist_root):
    run = tmp_path / "run"
    result = train("callbacks=none", "+callbacks.crash._target_=tests.helpers.crash.Crash",
                   f"data.root={mnist_root}", f"hydra.run.dir={run}", *TINY_RUN[:6])  # fmt: skip
    assert result.returncode == 1
    assert (
        "Traceback" in result.stderr
        and "RuntimeError: simulated bug in a callback" in result.stderr
    )
    assert json.loads((run / "failure.json").read_text())["status"] == "crashed"


@pytest.mark.parametrize("script", ["train.py", "eval.py"])
def test_a_refused_run_deletes_nothing_the_user_had(tmp_path, script):
    """A run refused in a folder of the user's removes what it added (.hydra/, its log) and
    nothing else: not the user's own log files, nor a log of the same name, nor the folder."""
    folder = tmp_path / "mine"
    folder.mkdir()
    own = {"notes.log": "my notes\n", "other.log": "kept\n", "eval.log": "an old eval\n"}
    for name, text in own.items():
        (folder / name).write_text(text)
    args = ["data.batch_size=0"] if script == "train.py" else ["ckpt_path=nope.ckpt"]
    result = subprocess.run(
        [sys.executable, script, *args, f"hydra.run.dir={folder}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and result.stderr.startswith("error: "), result.stderr[-2000:]
    assert sorted(p.name for p in folder.iterdir()) == sorted(own)
    for name, text in own.items():
        assert (folder / name).read_text().startswith(text)  # (Hydra appends to its own log)
