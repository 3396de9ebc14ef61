"""Sharing one machine's cores between the jobs of a parallel sweep (``hydra/launcher=joblib``).

Joblib's launcher runs ``hydra.launcher.n_jobs`` jobs at once, each in its own process, and each
job's torch would use every core: ``n_jobs`` x cores threads fighting over cores. So:

- before the sweep starts (a Hydra callback, :func:`limit_launcher`), the launcher's ``n_jobs`` is
  made the number of jobs that actually run at once: ``-1`` (all cores, joblib's convention;
  ``-2`` all but one...) becomes a number, and no more than the sweeper hands the launcher at a
  time (a 2-job sweep on 16 cores runs 2 jobs, not 16);
- each job then takes its share (:func:`share_cores`): ``cores // n_jobs`` torch threads, at least
  one, so that threads x jobs <= cores whenever ``n_jobs`` <= cores.

Other launchers are left alone: the basic one runs one job at a time, and a SLURM job gets the
cores its ``cpus_per_task`` asked for.
"""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig

from ae_lab.errors import UserError

log = logging.getLogger(__name__)

JOBLIB_LAUNCHER = "JoblibLauncher"


def _is_joblib(launcher: Any) -> bool:
    return str(launcher.get("_target_", "")).endswith(f".{JOBLIB_LAUNCHER}")


def cores() -> int:
    """The cores this process may use (joblib's count: CPU affinity and cgroup quotas included)."""
    import joblib

    return joblib.cpu_count()


def jobs_at_once(n_jobs: int, cores: int, batch: int | None = None) -> int:
    """How many jobs joblib runs at once for ``n_jobs`` (``-1``: all ``cores``, ``-2``: all but
    one, ...) when the sweeper hands it ``batch`` jobs at a time (None: unknown)."""
    if n_jobs == 0:
        raise UserError(
            "hydra.launcher.n_jobs=0 runs no job: give a number, or -1 for one per core."
        )
    running = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
    return max(1, min(running, batch)) if batch else running


def threads_per_job(jobs: int, cores: int) -> int:
    """Torch threads for each of ``jobs`` jobs sharing ``cores``: ``threads x jobs <= cores``
    (one thread each when there are more jobs than cores)."""
    return max(1, cores // max(1, jobs))


def sweep_batch(hydra_cfg: DictConfig) -> int | None:
    """The most jobs the sweeper hands the launcher in one call, or None when unknown: for
    Hydra's basic sweeper every job of the sweep (or ``max_batch_size``), counted with the
    sweeper's own splitting; for Optuna's, ``n_jobs`` trials (at most ``n_trials``)."""
    sweeper = hydra_cfg.sweeper
    target = str(sweeper.get("_target_", ""))
    if target.endswith(".BasicSweeper"):
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra.errors import HydraException

        params = [f"{key}={value}" for key, value in (sweeper.get("params") or {}).items()]
        try:
            parsed = OverridesParser.create().parse_overrides([*params, *hydra_cfg.overrides.task])
            batches = BasicSweeper.split_arguments(parsed, sweeper.get("max_batch_size"))
        except HydraException:
            return None  # the sweeper itself will say what is wrong with the overrides
        return max(len(batch) for batch in batches)
    if target.endswith(".OptunaSweeper"):
        return max(1, min(int(sweeper.n_jobs), int(sweeper.n_trials)))
    return None


def limit_launcher(config: DictConfig) -> int | None:
    """Set joblib's ``hydra.launcher.n_jobs`` (in the sweep's config and in the overrides every
    job is composed from) to the number of jobs that will run at once; returns it (None: the
    launcher is not joblib's, nothing changed)."""
    from omegaconf import open_dict, read_write

    hydra_cfg = config.hydra
    if not _is_joblib(hydra_cfg.launcher):
        return None
    jobs = jobs_at_once(int(hydra_cfg.launcher.n_jobs), cores(), sweep_batch(hydra_cfg))
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.launcher.n_jobs = jobs
        hydra_cfg.overrides.hydra.append(f"hydra.launcher.n_jobs={jobs}")
    return jobs


def parallel_jobs() -> int | None:
    """How many jobs run at once beside this one, in a job of a joblib sweep (None otherwise)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN or not _is_joblib(hydra_cfg.launcher):
        return None  # (a plain run is never launched by joblib, whatever hydra/launcher says)
    return jobs_at_once(int(hydra_cfg.launcher.n_jobs), cores())


def share_cores() -> int | None:
    """In a job of a joblib sweep, use this job's share of the cores (``torch.set_num_threads``);
    returns the thread count (None: not such a job, torch's default left alone)."""
    jobs = parallel_jobs()
    if jobs is None:
        return None
    import torch

    available = cores()
    threads = threads_per_job(jobs, available)
    torch.set_num_threads(threads)
    log.info("%d jobs at once on %d cores: %d torch thread(s) per job", jobs, available, threads)
    return threads
