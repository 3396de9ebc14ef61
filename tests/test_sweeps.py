"""Sweeps survive failing jobs: each failure is recorded in its job's directory, the other jobs
run, the summary marks the failures and the sweep exits 1; a finished sweep is never rewritten."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import pytest

from ae_lab.cli import Failure
from ae_lab.hydra_callbacks import SweepSummary, write_summary
from tests.conftest import TINY_RUN
from tests.test_cli import train


def _job(sweep: Path, name: str, overrides: list[str]) -> Path:
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    return job


def test_the_summary_reads_each_job_s_outcome_from_disk(tmp_path):
    (_job(tmp_path, "0", ["model=ae"]) / "metrics.json").write_text('{"val/loss": 1.5}')
    Failure("bad setting", 2, "data.batch_size=0: must be >= 1", "UserError").write(
        _job(tmp_path, "1", ["data.batch_size=0"])
    )
    _job(tmp_path, "2", ["model=vae"])  # killed: neither metrics nor a failure record
    (_job(tmp_path, "10", ["model=cnn_ae"]) / "metrics.json").write_text('{"val/loss": 2.5}')
    rows = write_summary(tmp_path)
    assert [(r["job"], r["status"], r["exit_code"]) for r in rows] == [
        ("0", "completed", 0),
        ("1", "bad setting", 2),
        ("2", "no result", None),
        ("10", "completed", 0),
    ]
    assert rows[1]["error"] == "data.batch_size=0: must be >= 1"
    assert json.loads((tmp_path / "summary.json").read_text()) == rows
    assert (tmp_path / "summary.csv").read_text().splitlines()[0].startswith("job,overrides,status")
    assert not list(tmp_path.glob(".*tmp"))


def test_a_sweep_with_a_failed_job_exits_1_naming_it(tmp_path, capsys):
    (_job(tmp_path, "0", ["model=ae"]) / "metrics.json").write_text('{"val/loss": 1.5}')
    Failure("crashed", 1, "RuntimeError: boom", "RuntimeError").write(_job(tmp_path, "1", ["x=1"]))
    with pytest.raises(SystemExit) as exited:
        SweepSummary()._summarise(tmp_path)
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("error: 1 of 2 jobs failed") and "job 1 (crashed): RuntimeError: boom" in err
    )
    assert (tmp_path / "summary.csv").is_file()


def _fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_a_sweep_survives_its_failing_jobs_and_is_never_rewritten(tmp_path, mnist_root):
    # The sweep's time-stamped name (by the day here) is taken by an older sweep: it goes to _1.
    stamp = datetime.now().strftime("%Y-%m-%d")
    older = tmp_path / "multiruns" / stamp
    (older / "0").mkdir(parents=True)
    (older / "multirun.yaml").write_text("an older sweep\n")
    # 4 jobs: one finishes, two are refused (batch_size=0), one crashes in a callback
    result = train(
        "-m", "callbacks=none", "+callbacks.crash._target_=tests.helpers.crash.Crash",
        "+callbacks.crash.when=never,fit", "data.batch_size=16,0", f"data.root={mnist_root}",
        f"paths.log_dir={tmp_path}", "hydra.sweep.dir=${paths.log_dir}/multiruns/${now:%Y-%m-%d}",
        *TINY_RUN[:6],
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    sweep = tmp_path / "multiruns" / f"{stamp}_1"
    assert (older / "multirun.yaml").read_text() == "an older sweep\n"
    assert sorted(p.name for p in older.iterdir()) == ["0", "multirun.yaml"]
    rows = json.loads((sweep / "summary.json").read_text())
    ok, refused, crashed, also_refused = (
        next(r for r in rows if {f"+callbacks.crash.when={w}", f"data.batch_size={b}"}
             <= set(r["overrides"].split()))
        for w, b in [("never", 16), ("never", 0), ("fit", 16), ("fit", 0)]
    )  # fmt: skip
    assert ok["status"] == "completed" and ok["val/loss"] > 0
    assert (sweep / ok["job"] / "metrics.json").is_file()
    for row in (refused, also_refused):
        assert (row["status"], row["exit_code"]) == ("bad setting", 2)
        assert row["error"] == "data.batch_size=0: must be >= 1"
    assert (crashed["status"], crashed["exit_code"]) == ("crashed", 1)
    assert crashed["error"] == "RuntimeError: simulated bug in a callback"
    assert "Traceback" in (sweep / crashed["job"] / "train.log").read_text()
    failure = json.loads((sweep / crashed["job"] / "failure.json").read_text())
    assert failure["status"] == "crashed"
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 3 of 4 jobs failed") and str(sweep / "summary.csv") in last

    # The same sweep pointed at the finished directory: refused before Hydra writes anything.
    before = _fingerprint(sweep)
    again = train("-m", "callbacks=none", "data.batch_size=16,32", f"hydra.sweep.dir={sweep}")
    assert again.returncode == 2 and again.stderr.startswith("error: hydra.sweep.dir=")
    assert "already holds a sweep" in again.stderr and len(again.stderr.splitlines()) == 1
    assert _fingerprint(sweep) == before
