"""Hydra's joblib launcher (hydra-joblib-launcher) with each job in a process of its own that the
sweep's process supervises: a SIGTERM or Ctrl-C to the sweep stops its jobs cleanly (each saves
``last.ckpt``) and summarises them, a job killed by the out-of-memory killer is recorded as failed
while the others go on, and no worker outlives the sweep (:mod:`ae_lab.sweeps.launcher`).

The plugin's settings (``hydra.launcher.n_jobs``, ``.timeout``) keep their meaning;
``hydra/launcher=joblib`` selects the plugin's config, and
:class:`ae_lab.sweeps.callbacks.SupervisedJobs` puts this class in its ``_target_`` before the sweep
starts (Hydra instantiates launchers only from the ``hydra_plugins`` package).
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher as _PluginLauncher


class JoblibLauncher(_PluginLauncher):
    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from ae_lab.sweeps.launcher import launch

        return launch(self, job_overrides, initial_job_idx)
