"""ae_bakeoff's published numbers, for the report of an ``experiment=bakeoff`` sweep.

``bakeoff_published.json`` beside this module holds them, copied from ae_bakeoff's
``results/<dataset>/*_results.json`` (its ``_source`` says which files and commit): per dataset
(the lab's ``data`` option: ``fashion_mnist``, ``mnist``, ``kmnist``) and model (ae_bakeoff's
names, which ``conf/bakeoff/`` uses), ``test/recon``, ``test/probe_linear_550`` and
``test/anomaly_auroc``. ae_bakeoff's denoising model reconstructs the clean test image (its noise
is on only in training), so its reconstruction error stands as ``test/recon_clean``, beside ours
of the clean image; our ``test/recon`` is of the corrupted one. A metric with ``conditions`` (the anomaly AUROC: ae_bakeoff's comes from a
second model per autoencoder, 2-D latent, class 1 held out) is shown beside a job's only when the
job's config has those values.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).with_name("bakeoff_published.json")
#: The experiment preset whose sweeps get the published column, and its config group of models.
EXPERIMENT, GROUP = "bakeoff", "bakeoff"
#: The published metrics, in the order their columns appear.
METRICS = ("test/recon", "test/recon_clean", "test/probe_linear_550", "test/anomaly_auroc")


@functools.cache
def _table() -> dict[str, Any]:
    return json.loads(SOURCE.read_text())


def source() -> str:
    """Where the numbers come from (ae_bakeoff's files and commit)."""
    return str(_table()["_source"])


def models(dataset: str) -> dict[str, dict[str, float]]:
    """``{model: {metric: value}}`` for ``dataset`` (the lab's ``data`` option); empty when
    ae_bakeoff published nothing for it."""
    return dict(_table()["datasets"].get(dataset, {}))


def conditions(metric: str) -> dict[str, Any]:
    """The config values a job needs for ``metric``'s published value to be comparable."""
    return dict(_table().get("conditions", {}).get(metric, {}))


def published(
    dataset: str | None, model: str | None, metric: str, setting: Callable[[str], Any]
) -> float | None:
    """ae_bakeoff's ``metric`` for ``model`` on ``dataset``, when the job's settings (``setting``:
    a dotted key to its value in the job's config) meet the metric's :func:`conditions`."""
    if dataset is None or model is None:
        return None
    value = models(dataset).get(model, {}).get(metric)
    if value is None:
        return None
    if any(setting(key) != wanted for key, wanted in conditions(metric).items()):
        return None
    return float(value)
