"""The model's optimizer and learning-rate schedule, built from their factories.

A schedule that spans the run (``OneCycleLR``'s ``total_steps``, ``CosineAnnealingLR``'s ``T_max``)
and was given no length gets the run's length in optimizer steps, and is stepped every batch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import torch

#: A schedule's arguments filled in with the run's length when they are null.
RUN_LENGTH_ARGUMENTS = ("total_steps", "T_max")


def configure(
    optimizer_factory: Callable[..., torch.optim.Optimizer],
    scheduler_factory: Callable[..., Any] | None,
    params: Iterable[torch.nn.Parameter],
    run_steps: Callable[[], int],
) -> Any:
    """What ``configure_optimizers`` returns: the optimizer, and its schedule when there is one.
    ``run_steps()`` is asked for the run's length only when a schedule needs it."""
    optimizer = optimizer_factory(params=params)
    if scheduler_factory is None:
        return optimizer
    given = getattr(scheduler_factory, "keywords", {})
    takes = inspect.signature(scheduler_factory).parameters
    kwargs = {
        name: int(run_steps())
        for name in RUN_LENGTH_ARGUMENTS
        if name in takes and given.get(name) is None
    }
    scheduler = scheduler_factory(optimizer=optimizer, **kwargs)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
