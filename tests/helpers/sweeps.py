"""A fake sweep folder in the layout Hydra and the jobs leave: each job's ``.hydra/`` (overrides,
choices, config), its ``metrics.json`` or ``failure.json``, and its ``report/`` files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf
from PIL import Image

from ae_lab.errors import Failure
from ae_lab.layout import CODE_MAP, INTERPOLATION, METRICS_FILE, SAMPLES, STRIP

CLASSES = ("zero", "one", "two")


def grey(seed: int, height: int, width: int) -> np.ndarray:
    values = np.random.default_rng(seed).integers(0, 256, (height, width, 1), dtype=np.uint8)
    return values.repeat(3, axis=2)


def add_job(
    sweep: Path,
    number: int,
    overrides: list[str],
    metrics: dict[str, float] | None = None,
    choices: dict[str, str] | None = None,
    config: dict[str, Any] | None = None,
    error: str | None = None,
    figures: bool = True,
) -> Path:
    """Job ``number`` of ``sweep``: finished with ``metrics`` (its report files drawn when
    ``figures``), or failed with ``error``."""
    job = sweep / str(number)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(overrides)))
    if choices is not None:
        hydra = {"hydra": {"runtime": {"choices": choices}}}
        (job / ".hydra" / "hydra.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(hydra)))
    if config is not None:
        (job / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
    if error is not None:
        Failure("crashed", 1, error, "RuntimeError").write(job)
        return job
    (job / METRICS_FILE).write_text(json.dumps(metrics or {}))
    if figures:
        (job / STRIP.parent).mkdir()
        for path, (h, w) in ((STRIP, (62, 242)), (SAMPLES, (120, 120)), (INTERPOLATION, (60, 200))):
            Image.fromarray(grey(number, h, w)).save(job / path)
        rng = np.random.default_rng(number)
        labels = rng.integers(0, len(CLASSES), 90)
        coords = rng.normal(size=(90, 2)) + labels[:, None] * 3
        np.savez(job / CODE_MAP, coords=coords.astype(np.float32), labels=labels,
                 method=np.array("PCA"), latent_dim=np.array(20), class_names=np.array(CLASSES))  # fmt: skip
    return job
