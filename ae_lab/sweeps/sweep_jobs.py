"""What a sweep's job folders say beyond their metrics, for its ``report.md``: each job's
config-group choices (``.hydra/hydra.yaml``; its overrides for a job that never composed its
config) and its composed config (``.hydra/config.yaml``), read with OmegaConf alone."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ae_lab.sweeps import published, report
from ae_lab.sweeps.report import Row

#: A failed job's error in report.md is cut to this many characters (summary.md keeps it all).
ERROR_CHARS = 160


@dataclass
class Job:
    """A row of the summary with what its folder says: its config-group ``choices`` (from its
    ``.hydra/hydra.yaml``, else from its overrides) and its composed ``config``, if any."""

    row: Row
    folder: Path
    choices: dict[str, str] = field(default_factory=dict)
    config: Any = None

    def setting(self, key: str) -> Any:
        if self.config is None:
            return None
        with contextlib.suppress(Exception):  # an interpolation the sweep cannot resolve
            return OmegaConf.select(self.config, key, default=None)
        return None

    def path(self, relative: Path | str) -> Path:
        return self.folder / relative

    @property
    def finished(self) -> bool:
        return self.row.get("status") == report.COMPLETED


def read_job(sweep_dir: Path, row: Row) -> Job:
    """The job of ``row`` in ``sweep_dir``, with what its folder says."""
    job = Job(row, sweep_dir / str(row.get("job", "")))
    for token in str(row.get("overrides") or "").split():  # a job that never composed: these
        key, _, value = token.partition("=")
        if value and "." not in key and key[:1] not in "+~":
            job.choices[key] = value
    hydra_dir = job.folder / ".hydra"
    with contextlib.suppress(Exception):  # missing or damaged: the overrides must do
        hydra = OmegaConf.load(hydra_dir / "hydra.yaml")
        found = OmegaConf.select(hydra, "hydra.runtime.choices", default=None) or {}
        job.choices.update({str(k): str(v) for k, v in found.items() if v is not None})
    with contextlib.suppress(Exception):
        job.config = OmegaConf.load(hydra_dir / "config.yaml")
    return job


def dataset(jobs: Sequence[Job]) -> str | None:
    """The jobs' ``data`` option (the first job that names one)."""
    return next((j.choices["data"] for j in jobs if "data" in j.choices), None)


def is_bakeoff(jobs: Sequence[Job]) -> bool:
    """Whether the jobs ran ``experiment=bakeoff``."""
    return any(j.choices.get("experiment") == published.EXPERIMENT for j in jobs)


def labels(jobs: Sequence[Job], bakeoff: bool) -> list[str]:
    """What tells the jobs apart: the bake-off's model, or each job's own overrides."""
    _, own = report.split_overrides([job.row for job in jobs])
    return [
        job.choices.get(published.GROUP, "?") if bakeoff else report.short_numbers(o) or "-"
        for job, o in zip(jobs, own, strict=True)
    ]


def status(row: Row) -> str:
    """``completed``, or how the job ended and its error (cut to :data:`ERROR_CHARS`)."""
    text = report.outcome(row)
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"
