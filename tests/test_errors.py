"""The CLI's error contract (ae_lab/cli.py), in-process: which exception becomes which exit status
and line, what a failed job leaves in its directory, and Hydra's config errors on one line."""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, InstantiationException
from hydra.types import RunMode
from omegaconf import open_dict, read_write

from ae_lab import cli, errors
from ae_lab.errors import RunFailed, RunInterrupted, UserError
from ae_lab.layout import FAILURE_FILE
from tests.conftest import compose_config


def _wrapped(inner: Exception) -> InstantiationException:
    try:
        try:
            raise inner
        except Exception as exc:
            raise InstantiationException("Error in call to target 'x.Y':\n...") from exc
    except InstantiationException as outer:
        return outer


@pytest.mark.parametrize(
    ("exc", "status", "code", "error"),
    [
        (UserError("data.batch_size=0: must be >= 1"), "bad setting", 2, "data.batch_size=0"),
        (_wrapped(UserError("size must be an int")), "bad setting", 2, "size must be an int"),
        (RunFailed("the loss diverged"), "failed", 1, "the loss diverged"),
        (RunInterrupted("stopped", signal.SIGTERM), "interrupted", 143, "stopped"),
        (KeyboardInterrupt(), "interrupted", 130, "interrupted (Ctrl-C)"),
        (ValueError("a bug\nover lines"), "crashed", 1, "ValueError: a bug over lines"),
        (_wrapped(ValueError("x")), "crashed", 1, "InstantiationException: Error in call"),
    ],
)
def test_each_ending_has_its_status_and_one_line(exc, status, code, error):
    failure = errors.Failure.of(exc)
    assert (failure.status, failure.exit_code) == (status, code)
    assert failure.error.startswith(error) and "\n" not in failure.error


def test_a_user_error_exits_2_with_one_line(capsys):
    with pytest.raises(SystemExit) as exited:
        errors.exit_with(UserError("ckpt_path=x does not exist"))
    assert exited.value.code == 2
    assert capsys.readouterr().err == "error: ckpt_path=x does not exist\n"


@pytest.fixture
def job(tmp_path, monkeypatch):
    """A Hydra job's context as ``run_task`` sees it: ``job(multirun) -> (cfg, output_dir)``."""
    monkeypatch.chdir(tmp_path)

    def make(multirun: bool, *overrides: str):
        output_dir = tmp_path / "sweep" / "0"
        output_dir.mkdir(parents=True)
        cfg = compose_config(list(overrides), output_dir)
        hydra = HydraConfig.get()
        with read_write(hydra), open_dict(hydra):
            hydra.mode = RunMode.MULTIRUN if multirun else RunMode.RUN
            hydra.sweep.dir = str(tmp_path / "sweep")
            hydra.overrides.task = ["model=ae"]
        return cfg, output_dir

    yield make
    HydraConfig.instance().cfg = None


def _raises(exc: BaseException):
    def task(cfg):
        raise exc

    return task


def test_a_single_run_refused_exits_2_and_records_why(job, capsys):
    cfg, output_dir = job(False)
    with pytest.raises(SystemExit) as exited:
        cli.run_task(_raises(UserError("seed='abc': must be an integer")), cfg)
    assert exited.value.code == 2
    assert capsys.readouterr().err == "error: seed='abc': must be an integer\n"
    # this directory was not claimed by this process, so it is kept, with the reason
    assert json.loads((output_dir / FAILURE_FILE).read_text())["exit_code"] == 2


def test_a_bug_in_a_single_run_keeps_its_traceback(job):
    cfg, output_dir = job(False)
    bug = ZeroDivisionError("a real bug")
    with pytest.raises(ZeroDivisionError) as raised:
        cli.run_task(_raises(bug), cfg)
    assert raised.value is bug
    assert json.loads((output_dir / FAILURE_FILE).read_text())["status"] == "crashed"


@pytest.mark.parametrize(
    ("exc", "status"), [(UserError("bad"), "bad setting"), (RuntimeError("bug"), "crashed")]
)
def test_a_failed_job_of_a_sweep_is_recorded_and_the_sweep_goes_on(
    job, capsys, caplog, exc, status
):
    cfg, output_dir = job(True)
    with caplog.at_level(logging.ERROR):
        assert cli.run_task(_raises(exc), cfg) is None
    failure = json.loads((output_dir / FAILURE_FILE).read_text())
    assert failure["status"] == status
    err = capsys.readouterr().err
    assert err == f"error: job 0 failed ({output_dir}): {failure['error']}\n"
    if status == "crashed":  # the traceback goes to the job's log
        assert caplog.records[-1].exc_info[0] is RuntimeError


def test_a_sweep_job_returns_its_optimized_metric_and_none_when_it_failed(job, capsys):
    """None, which the Optuna sweeper records as a failed trial (a NaN would crash it)."""
    cfg, output_dir = job(True, "+optimized_metric=val/loss")
    assert cli.run_task(lambda cfg: {"val/loss": 0.25, "test/loss": 0.5}, cfg) == 0.25
    assert cli.run_task(lambda cfg: {"val/loss": None}, cfg) is None  # non-finite
    assert cli.run_task(_raises(RunFailed("diverged")), cfg) is None
    # a metric the run does not have: the job is a bad setting, named with what the run has
    assert cli.run_task(lambda cfg: {"val/lost": 0.25}, cfg) is None
    failure = json.loads((output_dir / FAILURE_FILE).read_text())
    assert failure["status"] == "bad setting"
    assert failure["error"].startswith("optimized_metric=val/loss is not a metric of this run")
    assert "val/lost" in capsys.readouterr().err


def test_an_interrupt_stops_the_sweep_after_writing_its_summary(job, capsys):
    cfg, output_dir = job(True)
    (output_dir / ".hydra").mkdir()
    (output_dir / ".hydra" / "overrides.yaml").write_text("- model=ae\n")
    with pytest.raises(SystemExit) as exited:
        cli.run_task(_raises(KeyboardInterrupt()), cfg)
    assert exited.value.code == 130
    (row,) = json.loads((output_dir.parent / "summary.json").read_text())
    assert row["status"] == "interrupted" and row["exit_code"] == 130


def test_hydra_config_errors_are_one_line_with_the_valid_choices(monkeypatch, capsys):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")

    def compose(*overrides):
        return lambda: compose_config(list(overrides), Path("/x"))

    for overrides, expected in [
        (["data.batch_sise=4"], "Key 'batch_sise' is not in struct. Did you mean batch_size?"),
        (["model=nope"], "Could not find 'model/nope'. Available options in 'model': ae, "),
        (["experiment=vae_mnsit"], "Available options in 'experiment': bakeoff, cnn_ae_anime, "),
    ]:
        with pytest.raises(SystemExit) as exited:
            cli.main(compose(*overrides))
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and expected in err and err.count("\n") == 1


def test_hydra_full_error_set_by_the_user_shows_hydra_s_own_error(monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigCompositionException):
        cli.main(lambda: compose_config(["data.batch_sise=4"], Path("/x")))


def test_ctrl_c_outside_a_job_exits_130_without_a_traceback(monkeypatch, capsys):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")

    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exited:
        cli.main(interrupted)
    assert exited.value.code == 130
    assert capsys.readouterr().err == "error: interrupted (Ctrl-C)\n"


def test_a_job_refused_over_a_finished_run_leaves_it_as_it_was(job):
    cfg, output_dir = job(True)
    (output_dir / "metrics.json").write_text('{"val/loss": 1.0}\n')
    assert cli.run_task(_raises(UserError("already holds a run")), cfg) is None
    assert sorted(p.name for p in output_dir.iterdir()) == ["metrics.json"]
