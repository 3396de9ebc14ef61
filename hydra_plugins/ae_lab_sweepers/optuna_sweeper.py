"""Hydra's Optuna sweeper (hydra-optuna-sweeper), ending a search in which no trial finished the
way any sweep with failed jobs ends.

The plugin asks Optuna for the best trial once every trial has run; when none finished (every
trial failed: a dataset that is not there, a setting every trial shares) Optuna has none and the
plugin stops with a ``ValueError`` traceback, before Hydra calls the callbacks that write the
sweep's summary. Here that case is told in one log line instead, and the sweep goes on to its
summary, report and exit status 1, which name each trial's error (:mod:`ae_lab.sweeps.callbacks`).
Everything else is the plugin's own behaviour; ``conf/hparams_search/*.yaml`` select this class
with ``hydra.sweeper._target_``.
"""

from __future__ import annotations

import logging
from typing import Any

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper as _PluginSweeper

log = logging.getLogger(__name__)

#: What optuna 2.x (the plugin's) says when asked for the best of no completed trials.
NO_COMPLETED_TRIAL = "No trials are completed yet"


class OptunaSweeper(_PluginSweeper):
    def sweep(self, arguments: list[str]) -> Any:
        try:
            return super().sweep(arguments)
        except ValueError as exc:
            if NO_COMPLETED_TRIAL not in str(exc) or self.sweeper.job_idx == 0:
                raise
            log.error(
                "no trial of the search finished, so it has no best parameters "
                "(optimization_results.yaml was not written)"
            )
            return None
