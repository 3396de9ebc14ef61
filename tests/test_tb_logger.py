"""The lab's TensorBoard logger writes what Lightning's writes: the same curves, read back."""

from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ae_lab.tb_logger import TensorBoardLogger

METRICS = [
    (0, {"train/loss": torch.tensor(0.25), "train/lr": 1e-3, "train/kl": 3}),
    (10, {"train/loss": torch.tensor(float("nan")), "train/lr": 5e-4}),
    (20, {"val/loss": 0.125, "pair": {"a": 1.0, "b": 2.0}}),
    (None, {"epoch": 1.0, "text": "1.5"}),  # (a number in a string: Lightning writes it too)
]


def curves(logger_class: type, folder) -> dict:
    logger = logger_class(str(folder), name="run", version="", prefix="p")
    for step, metrics in METRICS:
        logger.log_metrics(metrics, step=step)
    logger.finalize("success")
    found = {}
    for events_folder in sorted({p.parent for p in folder.rglob("events.out.tfevents.*")}):
        events = EventAccumulator(str(events_folder), size_guidance={"scalars": 0})
        events.Reload()
        for tag in events.Tags()["scalars"]:
            key = (events_folder.relative_to(folder).as_posix(), tag)
            found[key] = [(e.step, "nan" if math.isnan(e.value) else e.value)
                          for e in events.Scalars(tag)]  # fmt: skip
    return found


def test_it_writes_the_curves_lightnings_logger_writes(tmp_path):
    ours = curves(TensorBoardLogger, tmp_path / "ours")
    theirs = curves(LightningTensorBoardLogger, tmp_path / "theirs")
    assert ours == theirs
    assert ours[("run", "p-train/loss")] == [(0, 0.25), (10, "nan")]
    assert ("run/p-pair_a", "p-pair") in ours  # a dict: add_scalars' folders, as Lightning's


def test_one_call_is_one_event(tmp_path):
    logger = TensorBoardLogger(str(tmp_path), name="run", version="")
    logger.log_metrics({"a": 1.0, "b": 2.0, "c": 3.0}, step=4)
    logger.finalize("success")
    events = EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == ["a", "b", "c"]
    file = next((tmp_path / "run").glob("events.out.tfevents.*"))
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    with_values = [e for e in EventFileLoader(str(file)).Load() if e.HasField("summary")]
    assert [len(e.summary.value) for e in with_values] == [3]


@pytest.mark.parametrize("value", ["abc", [1.0, 2.0], object()])
def test_what_lightning_refuses_is_refused_alike(tmp_path, value):
    for logger_class in (TensorBoardLogger, LightningTensorBoardLogger):
        logger = logger_class(str(tmp_path / logger_class.__module__), name="run")
        with pytest.raises(ValueError, match="which is currently not supported"):
            logger.log_metrics({"x": value}, step=0)
