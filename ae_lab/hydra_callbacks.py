"""Hydra callbacks: guard a finished run directory before Hydra writes into it, and gather a
multirun's results into one table beside its jobs."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ae_lab.errors import UserError
from ae_lab.run_dir import refuse_to_overwrite


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job folder: its number, its overrides and its ``metrics.json`` (if any)."""
    rows = []
    for job in sorted((p for p in sweep_dir.iterdir() if p.is_dir()), key=lambda p: p.name):
        overrides_file = job / ".hydra" / "overrides.yaml"
        if not overrides_file.exists():
            continue
        overrides = OmegaConf.to_container(OmegaConf.load(overrides_file))
        metrics_file = job / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
        rows.append({"job": job.name, "overrides": " ".join(overrides), **metrics})
    return rows


def write_summary(sweep_dir: Path) -> list[dict[str, Any]]:
    """``summary.csv`` and ``summary.json`` in ``sweep_dir``: every job's overrides and metrics."""
    rows = collect(sweep_dir)
    if rows:
        (sweep_dir / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
        columns = list(dict.fromkeys(key for row in rows for key in row))
        with open(sweep_dir / "summary.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    return rows


class SweepSummary(Callback):
    """Writes ``summary.csv``/``summary.json`` when a ``-m`` sweep ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        write_summary(Path(config.hydra.sweep.dir))


class RunDirectoryGuard(Callback):
    """Stops ``python train.py hydra.run.dir=DIR`` with a short error when ``DIR`` already holds
    a run, before Hydra rewrites its ``.hydra/`` config files."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if "LOCAL_RANK" in os.environ:  # a DDP worker joining its rank-0 run: same directory
            return
        try:
            refuse_to_overwrite(config.hydra.run.dir)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
