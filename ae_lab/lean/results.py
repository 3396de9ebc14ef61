"""Lightning's store of ``self.log`` values, without re-placing a value's state at every call, and
with a count of its changes.

Every ``self.log`` ends in ``_ResultCollection.log``, which calls ``.to(value.device)`` on the
value's ``_ResultMetric``: that walks the metric's whole ``__dict__`` (a torchmetrics ``Metric``:
~40 attributes, among them its ``_Metadata`` dataclass, which the walk deep-copies), ~0.7 ms a
call on a CPU, every call, although the state has been on that device since the first (a logged
torchmetrics ``Metric`` is walked the same way). The evaluation steps log a few values each, and
the training step one value every ``log_every_n_steps``. :class:`LeanResults` calls it only when
some of the metric's state is not on the value's device (its first value, a value from another
device, after ``cpu()``).

:attr:`LeanResults.changes` counts what can change the values the logger connector reads back
(``log``, ``reset``, a key set or deleted): :mod:`ae_lab.lean.batch` reads the step's logged
values again only when it moved (see there).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch.trainer.connectors.logger_connector.result import (
    _Metadata,
    _ResultCollection,
    _ResultMetric,
    _Sync,
)
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.memory import recursive_detach
from torch import Tensor
from torchmetrics import Metric


def _placed(metric: _ResultMetric, device: torch.device) -> bool:
    """Every tensor of the metric's state (and of its defaults), and the torchmetrics ``Metric`` it
    holds when one was logged, is on ``device``: what ``metric.to(device)`` would leave as it is."""
    held = metric.__dict__.get("value")
    if not metric.is_tensor and not (isinstance(held, Metric) and held.device == device):
        return False
    values = [*metric.__dict__.values(), *metric._defaults.values()]
    return all(v.device == device for v in values if isinstance(v, Tensor))


class LeanResults(_ResultCollection):
    """A ``_ResultCollection`` whose ``log`` moves a metric's state only when it is elsewhere."""

    def __init__(self, training: bool) -> None:
        super().__init__(training)
        #: bumped by everything that can change what ``metrics()`` returns
        self.changes = 0

    def log(
        self,
        fx: str,
        name: str,
        value: Any,
        prog_bar: bool = False,
        logger: bool = True,
        on_step: bool = False,
        on_epoch: bool = True,
        reduce_fx: Callable = torch.mean,
        enable_graph: bool = False,
        sync_dist: bool = False,
        sync_dist_fn: Callable = _Sync.no_op,
        sync_dist_group: Any | None = None,
        add_dataloader_idx: bool = True,
        batch_size: int | None = None,
        metric_attribute: str | None = None,
        rank_zero_only: bool = False,
    ) -> None:
        """Lightning 2.6's ``_ResultCollection.log``, with the ``.to(value.device)`` made
        conditional (:func:`_placed`)."""
        self.changes += 1
        if not enable_graph:
            value = recursive_detach(value)
        key = f"{fx}.{name}"
        if add_dataloader_idx and self.dataloader_idx is not None:
            key += f".{self.dataloader_idx}"
            fx += f".{self.dataloader_idx}"
        meta = _Metadata(
            fx=fx,
            name=name,
            prog_bar=prog_bar,
            logger=logger,
            on_step=on_step,
            on_epoch=on_epoch,
            reduce_fx=reduce_fx,
            enable_graph=enable_graph,
            add_dataloader_idx=add_dataloader_idx,
            dataloader_idx=self.dataloader_idx,
            metric_attribute=metric_attribute,
        )
        meta.sync = _Sync(
            _should=sync_dist,
            fn=sync_dist_fn,
            _group=sync_dist_group,
            rank_zero_only=rank_zero_only,
        )
        if key not in self:
            self[key] = _ResultMetric(meta, isinstance(value, Tensor))
        elif meta != self[key].meta:
            raise MisconfigurationException(
                f"You called `self.log({name}, ...)` twice in `{fx}` with different arguments. "
                "This is not allowed"
            )
        metric = self[key]
        if not _placed(metric, value.device):
            metric.to(value.device)
        batch_size = self._extract_batch_size(metric, batch_size, meta)
        self.update_metrics(key, value, batch_size)

    # ---- everything else that changes what metrics() returns ----------------------------------
    def update_metrics(self, key: str, value: Any, batch_size: int) -> None:
        self.changes += 1
        super().update_metrics(key, value, batch_size)

    def reset(self, metrics: bool | None = None, fx: str | None = None) -> None:
        self.changes += 1
        super().reset(metrics, fx)

    def __setitem__(self, key: str, value: Any) -> None:
        self.changes += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.changes += 1
        super().__delitem__(key)
