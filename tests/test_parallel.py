"""A parallel sweep shares the machine's cores: joblib's n_jobs becomes the jobs that run at once,
and each job takes cores // n_jobs torch threads."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from ae_lab.errors import UserError
from ae_lab.run import parallel
from ae_lab.run.build import build_trainer, progress_bar

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
BASIC = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
OPTUNA = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"


@pytest.mark.parametrize(
    ("n_jobs", "cores", "batch", "expected"),
    [
        (-1, 2, None, 2),  # -1: one job per core (the plugin's default)
        (-1, 16, 2, 2),  # ... but no more than the sweep hands the launcher at once
        (-1, 2, 3, 2),
        (-2, 8, None, 7),  # joblib's convention: all cores but one
        (-20, 8, None, 1),
        (4, 16, None, 4),  # a number is kept...
        (10, 16, 3, 3),  # ... unless the sweep has fewer jobs
        (10, 2, None, 10),  # more jobs than cores when the user asks for them
    ],
)
def test_jobs_at_once(n_jobs, cores, batch, expected):
    assert parallel.jobs_at_once(n_jobs, cores, batch) == expected


def test_n_jobs_0_is_a_bad_setting():
    with pytest.raises(UserError, match="hydra.launcher.n_jobs"):
        parallel.jobs_at_once(0, 4)


@pytest.mark.parametrize("cores", [1, 2, 3, 8, 16, 64])
def test_threads_times_jobs_never_exceeds_the_cores(cores):
    for jobs in range(1, cores + 1):
        threads = parallel.threads_per_job(jobs, cores)
        assert threads >= 1 and threads * jobs <= cores
        assert (threads + 1) * jobs > cores  # and no core is left idle that a job could use
    assert parallel.threads_per_job(cores + 5, cores) == 1


def _hydra(sweeper: dict, task: list[str], launcher: str = JOBLIB, n_jobs: int = -1):
    return OmegaConf.create(
        {"hydra": {"sweeper": sweeper, "launcher": {"_target_": launcher, "n_jobs": n_jobs},
                   "overrides": {"task": task, "hydra": ["hydra.mode=MULTIRUN"]}}}
    )  # fmt: skip


@pytest.mark.parametrize(
    ("sweeper", "task", "batch"),
    [
        ({"_target_": BASIC, "max_batch_size": None, "params": None}, ["a=1,2", "b=x,y,z"], 6),
        ({"_target_": BASIC, "max_batch_size": 4, "params": None}, ["a=1,2", "b=x,y,z"], 4),
        ({"_target_": BASIC, "max_batch_size": None, "params": {"c": "1,2"}}, ["a=1,2"], 4),
        ({"_target_": BASIC, "max_batch_size": None, "params": None}, ["a=1"], 1),
        ({"_target_": OPTUNA, "n_jobs": 2, "n_trials": 20}, ["a=1"], 2),
        ({"_target_": OPTUNA, "n_jobs": 8, "n_trials": 3}, [], 3),
        ({"_target_": "some.OtherSweeper"}, ["a=1,2"], None),
    ],
)
def test_the_sweeper_s_batch_is_counted_as_the_sweeper_counts_it(sweeper, task, batch):
    assert parallel.sweep_batch(_hydra(sweeper, task).hydra) == batch


def test_the_launcher_is_limited_before_the_sweep_and_every_job_sees_it(monkeypatch):
    monkeypatch.setattr(parallel, "cores", lambda: 16)
    config = _hydra({"_target_": BASIC, "max_batch_size": None, "params": None}, ["a=1,2,3"])
    assert parallel.limit_launcher(config) == 3
    assert config.hydra.launcher.n_jobs == 3
    # jobs are composed again from the sweep's Hydra overrides: the limit is one of them
    assert list(config.hydra.overrides.hydra) == ["hydra.mode=MULTIRUN", "hydra.launcher.n_jobs=3"]
    other = _hydra({"_target_": BASIC, "max_batch_size": None, "params": None}, ["a=1,2"], "x.Y")
    assert parallel.limit_launcher(other) is None and other.hydra.launcher.n_jobs == -1


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_a_job_of_a_joblib_sweep_takes_its_share_of_the_cores(compose, monkeypatch, torch_threads):
    monkeypatch.setattr(parallel, "cores", lambda: 8)
    compose(["hydra/launcher=joblib", "hydra.launcher.n_jobs=3", "hydra.mode=MULTIRUN"])
    assert parallel.share_cores() == 2 and torch.get_num_threads() == 2


@pytest.mark.parametrize(
    "overrides",
    [["hydra/launcher=joblib", "hydra.launcher.n_jobs=3"], ["hydra.mode=MULTIRUN"]],
    ids=["a plain run", "another launcher"],
)
def test_other_runs_keep_torch_s_threads(compose, monkeypatch, torch_threads, overrides):
    monkeypatch.setattr(parallel, "cores", lambda: 8)
    torch.set_num_threads(3)
    compose(overrides)
    assert parallel.share_cores() is None and torch.get_num_threads() == 3


@pytest.mark.parametrize(
    ("overrides", "bar"),
    [
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=3", "hydra.mode=MULTIRUN"], False),
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=1", "hydra.mode=MULTIRUN"], True),
        (
            [
                "hydra/launcher=joblib",
                "hydra.launcher.n_jobs=3",
                "hydra.mode=MULTIRUN",
                "trainer.enable_progress_bar=true",
            ],
            True,
        ),  # fmt: skip
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=3"], True),  # a plain run
    ],
    ids=["parallel jobs", "one job at a time", "asked for", "a plain run"],
)
def test_jobs_running_at_once_draw_no_progress_bars(compose, monkeypatch, overrides, bar):
    monkeypatch.setattr(parallel, "cores", lambda: 8)
    cfg = compose(["callbacks=none", "logger=[]", *overrides])
    trainer = build_trainer(cfg)
    assert progress_bar(cfg) is bar
    assert (trainer.progress_bar_callback is not None) is bar
