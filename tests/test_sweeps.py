"""Sweeps survive failing jobs: each failure is recorded in its job's directory, the other jobs
run, the summary marks the failures and the sweep exits 1; a finished sweep is never rewritten."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from ae_lab.errors import Failure
from ae_lab.run import parallel
from ae_lab.sweeps.callbacks import SweepSummary
from ae_lab.sweeps.summary import write_summary
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
    out, err = capsys.readouterr()
    assert (
        err.startswith("error: 1 of 2 jobs failed") and "job 1 (crashed): RuntimeError: boom" in err
    )
    assert (tmp_path / "summary.csv").is_file()
    # where to look is printed, and each path printed is there
    assert (
        f"table:  {tmp_path / 'summary.md'}" in out and f"report: {tmp_path / 'report.png'}" in out
    )
    assert (tmp_path / "summary.md").is_file() and (tmp_path / "report.png").is_file()


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
    # the table and the report mark the failures too; only the finished job has reconstructions
    table = (sweep / "summary.md").read_text()
    assert f"| {crashed['job']} | " in table and "crashed: RuntimeError: simulated bug" in table
    assert table.count("bad setting: data.batch_size=0: must be >= 1") == 2
    assert (sweep / ok["job"] / "report" / "reconstructions.png").is_file()
    assert (sweep / "report.png").is_file()

    # The same sweep pointed at the finished directory: refused before Hydra writes anything.
    before = _fingerprint(sweep)
    again = train("-m", "callbacks=none", "data.batch_size=16,32", f"hydra.sweep.dir={sweep}")
    assert again.returncode == 2 and again.stderr.startswith("error: hydra.sweep.dir=")
    assert "already holds a sweep" in again.stderr and len(again.stderr.splitlines()) == 1
    assert _fingerprint(sweep) == before


# ---- launchers and the Optuna search, each through train.py as a user runs it ----------------------
def _png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _check_sweep_outputs(sweep: Path, rows: list[dict]) -> np.ndarray:
    """Every finished job's run directory, the summary in three forms and the report; returns the
    report as an array, checked to be more than a blank page."""
    for row in rows:
        job = sweep / row["job"]
        if row["status"] == "completed":
            assert json.loads((job / "metrics.json").read_text())["val/loss"] > 0
            assert (job / "checkpoints" / "last.ckpt").is_file()
            assert _png(job / "report" / "reconstructions.png").shape == (62, 242, 3)
        else:
            assert not (job / "report").exists()
    assert {r["job"] for r in json.loads((sweep / "summary.json").read_text())} == {
        r["job"] for r in rows
    }
    table = (sweep / "summary.md").read_text()
    assert len([line for line in table.splitlines() if line.startswith("| ")]) == 1 + len(rows)
    report = _png(sweep / "report.png")
    assert report.shape[1] >= 800 and report.std() > 20  # digits and text, not a blank page
    assert not list(sweep.rglob(".*.tmp"))
    return report


def _sweep_dir(log_dir: Path, task: str = "train") -> Path:
    (sweep,) = (log_dir / task / "multiruns").iterdir()
    return sweep


@pytest.mark.slow
def test_joblib_and_submitit_sweeps_write_their_jobs_summary_and_report(tmp_path, mnist_root):
    """Three jobs in parallel with joblib (one of them crashes), then one job through submitit's
    local executor, which takes the path a SLURM job takes: pickled, run in a fresh process."""
    common = ["callbacks=none", f"data.root={mnist_root}", *TINY_RUN[:6]]
    crash = ["+callbacks.crash._target_=tests.helpers.crash.Crash", "+callbacks.crash.job=2"]
    joblib = train("-m", "model=ae,vae,sparse_ae", "hydra/launcher=joblib", *crash, *common,
                   f"paths.log_dir={tmp_path / 'joblib'}")  # fmt: skip
    assert joblib.returncode == 1, joblib.stderr[-3000:]
    sweep = _sweep_dir(tmp_path / "joblib")
    rows = json.loads((sweep / "summary.json").read_text())
    assert [(r["job"], r["status"]) for r in rows] == [
        ("0", "completed"), ("1", "completed"), ("2", "crashed")
    ]  # fmt: skip
    assert rows[2]["error"] == "RuntimeError: simulated bug in a callback"
    assert (
        "| 2 | `model=sparse_ae` | crashed: RuntimeError: simulated bug in a callback |"
        in (sweep / "summary.md").read_text()
    )
    last = joblib.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 1 of 3 jobs failed, the others finished: job 2 (crashed)")
    three = _check_sweep_outputs(sweep, rows)
    # the jobs shared the cores: n_jobs became the jobs that ran at once, threads x jobs <= cores
    cores = parallel.cores()
    log = (sweep / "0" / "train.log").read_text()
    jobs, threads = (
        int(n) for n in re.search(r"(\d+) jobs at once on \d+ cores: (\d+)", log).groups()
    )
    assert jobs == min(3, cores) and jobs * threads <= cores and threads == cores // jobs
    assert f"hydra.launcher.n_jobs={jobs}" in (sweep / "0" / ".hydra" / "hydra.yaml").read_text()

    submitit = train("-m", "model=vae", "hydra/launcher=submitit_local", *common,
                     f"paths.log_dir={tmp_path / 'submitit'}")  # fmt: skip
    assert submitit.returncode == 0, submitit.stderr[-3000:]
    sweep = _sweep_dir(tmp_path / "submitit")
    (row,) = json.loads((sweep / "summary.json").read_text())
    assert row["status"] == "completed" and row["overrides"].startswith("model=vae")
    one = _check_sweep_outputs(sweep, [row])
    assert list((sweep / ".submitit").rglob("*_result.pkl"))  # it did go through submitit
    assert one.shape[1] == three.shape[1] and one.shape[0] + 62 * 3 < three.shape[0]  # a row more


@pytest.mark.slow
def test_an_optuna_search_survives_a_failing_trial(tmp_path, fashion_root):
    """The Fashion-MNIST VAE preset, three tiny trials, the second of which crashes: Optuna
    records it as failed and goes on, the best of the others is written, the sweep exits 1."""
    result = train(
        "hparams_search=vae_fashion_optuna", "hydra.sweeper.n_trials=3", f"data.root={fashion_root}",
        f"paths.log_dir={tmp_path}", "model.nll_samples=4", *TINY_RUN[:6],
        "+callbacks.crash._target_=tests.helpers.crash.Crash", "+callbacks.crash.job=1",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    sweep = _sweep_dir(tmp_path, "vae_fashion_optuna")
    rows = json.loads((sweep / "summary.json").read_text())
    assert [r["status"] for r in rows] == ["completed", "crashed", "completed"]
    searched = {"model.optimizer.lr", "model.beta", "model.latent_dim"}
    for row in rows:
        assert {o.split("=")[0] for o in row["overrides"].split()} >= searched
    results = OmegaConf.load(sweep / "optimization_results.yaml")
    assert set(results.best_params) == searched
    best = max((r for r in rows if r["status"] == "completed"), key=lambda r: r["val/elbo"])
    assert results.best_value == pytest.approx(best["val/elbo"])  # maximised, from metrics.json
    assert f"model.latent_dim={results.best_params['model.latent_dim']}" in best["overrides"]
    assert (
        (sweep / "summary.md")
        .read_text()
        .splitlines()[0]
        .startswith("| job | overrides | status | val/elbo |")
    )
    _check_sweep_outputs(sweep, rows)
