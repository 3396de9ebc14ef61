"""The Optuna sweeper ends a search in which no trial finished like any sweep with failed jobs
(its summary is written, the sweep exits 1) instead of with the plugin's traceback."""

from __future__ import annotations

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper as PluginSweeper

from hydra_plugins.ae_lab_sweepers import optuna_sweeper
from tests.helpers.configs import options


def _sweeper(monkeypatch, raised: Exception, jobs_run: int) -> optuna_sweeper.OptunaSweeper:
    def sweep(self, arguments):
        self.sweeper.job_idx = jobs_run
        raise raised

    monkeypatch.setattr(PluginSweeper, "sweep", sweep)
    return optuna_sweeper.OptunaSweeper(
        sampler=None, direction="minimize", storage=None, study_name=None, n_trials=2, n_jobs=1,
        max_failure_rate=0.0, search_space=None, custom_search_space=None, params=None,
    )  # fmt: skip


def test_a_search_whose_trials_all_failed_goes_on_to_its_summary(monkeypatch, caplog):
    sweeper = _sweeper(monkeypatch, ValueError("No trials are completed yet."), jobs_run=2)
    assert sweeper.sweep([]) is None
    assert "no trial of the search finished" in caplog.text


@pytest.mark.parametrize(
    ("raised", "jobs_run"),
    [(ValueError("No trials are completed yet."), 0), (ValueError("a bad search space"), 2)],
    ids=["before any trial ran", "another error"],
)
def test_other_errors_are_the_plugin_s(monkeypatch, raised, jobs_run):
    with pytest.raises(ValueError) as caught:
        _sweeper(monkeypatch, raised, jobs_run).sweep([])
    assert caught.value is raised


@pytest.mark.parametrize("preset", options("hparams_search"))
def test_every_search_preset_uses_it_and_states_what_it_optimises(compose, preset):
    cfg = compose([f"hparams_search={preset}"])
    sweeper = HydraConfig.get().sweeper
    assert sweeper._target_ == "hydra_plugins.ae_lab_sweepers.optuna_sweeper.OptunaSweeper"
    assert HydraConfig.get().mode == RunMode.MULTIRUN  # no -m needed
    assert cfg.optimized_metric and sweeper.direction in ("minimize", "maximize")
    assert sweeper.params and sweeper.sampler.seed == cfg.seed  # a search repeats
