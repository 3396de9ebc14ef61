"""The lean store of ``self.log`` values holds what Lightning's holds, moves a value's state only
when it is on another device, and counts its changes."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.trainer.connectors.logger_connector.result import (
    _ResultCollection,
    _ResultMetric,
)
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torchmetrics import MeanMetric

from ae_lab.lean.results import LeanResults

#: (fx, name, value, options): what training and validation steps log
LOGS = [
    ("training_step", "loss", 2.0, {"prog_bar": True, "on_step": True, "on_epoch": False}),
    ("training_step", "both", 3.0, {"on_step": True, "on_epoch": True, "batch_size": 4}),
    ("training_step", "peak", 1.0, {"reduce_fx": "max", "on_step": False, "on_epoch": True}),
    ("training_step", "total", 5.0, {"reduce_fx": "sum", "logger": False}),
    ("training_step", "loss", 1.5, {"prog_bar": True, "on_step": True, "on_epoch": False}),
    ("training_step", "both", 4.0, {"on_step": True, "on_epoch": True, "batch_size": 2}),
    ("training_step", "peak", 7.0, {"reduce_fx": "max", "on_step": False, "on_epoch": True}),
    ("training_step", "total", 0.5, {"reduce_fx": "sum", "logger": False}),
]


def _logged(results: _ResultCollection) -> list:
    """The step metrics after each log, then the epoch metrics."""
    seen = []
    metric = MeanMetric()
    for fx, name, value, options in LOGS:
        results.log(fx, name, torch.tensor(value), **options)
        seen.append(results.metrics(on_step=True))
    metric.update(torch.tensor([1.0, 3.0]))
    results.log("training_step", "metric", metric, metric_attribute="metric")
    seen.append(results.metrics(on_step=False))
    return seen


def test_it_holds_what_lightnings_holds():
    assert _logged(LeanResults(training=True)) == _logged(_ResultCollection(training=True))


def test_logging_one_name_two_ways_is_refused_alike():
    for results in (LeanResults(training=True), _ResultCollection(training=True)):
        results.log("training_step", "loss", torch.tensor(1.0), prog_bar=True)
        with pytest.raises(MisconfigurationException, match=r"self.log\(loss, ...\)` twice"):
            results.log("training_step", "loss", torch.tensor(1.0), prog_bar=False)


def test_state_is_moved_only_when_it_is_elsewhere(monkeypatch):
    moves: list[torch.device] = []
    original = _ResultMetric.to

    def counted(self, *args, **kwargs):
        moves.append(args[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(_ResultMetric, "to", counted)
    stock, ours = _ResultCollection(training=True), LeanResults(training=True)
    for step in range(5):
        for results in (stock, ours):
            results.log("training_step", "loss", torch.tensor(float(step)), on_step=True)
    assert len(moves) == 5  # Lightning's: every call; ours: none, the state is on the CPU already
    moves.clear()
    ours.log("training_step", "loss", torch.tensor(1.0, device="meta"), on_step=True)
    ours.log("training_step", "loss", torch.tensor(2.0, device="meta"), on_step=True)
    assert moves == [torch.device("meta")]  # moved once, to where the values now are
    assert ours["training_step.loss"].value.device == torch.device("meta")
    moves.clear()
    metric = MeanMetric()
    for value in (1.0, 2.0, 3.0):
        metric.update(torch.tensor(value))
        ours.log("validation_step", "mean", metric, metric_attribute="metric")
    # a logged torchmetrics Metric: placed at its first log (nothing held yet), then left there
    assert moves == [torch.device("cpu")]


def test_every_change_is_counted():
    results = LeanResults(training=True)
    counts = [results.changes]
    results.log("training_step", "loss", torch.tensor(1.0), on_step=True)
    counts.append(results.changes)
    results.metrics(on_step=True)  # reading changes nothing
    counts.append(results.changes)
    results.reset()
    counts.append(results.changes)
    del results["training_step.loss"]
    counts.append(results.changes)
    assert counts[1] > counts[0] and counts[2] == counts[1] and counts[4] > counts[3] > counts[2]
