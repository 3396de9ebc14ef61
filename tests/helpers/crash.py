"""A stand-in for a bug, for tests of what a crash looks like: a callback that raises."""

from __future__ import annotations

from typing import Literal

import lightning as L
from hydra.core.hydra_config import HydraConfig


class Crash(L.Callback):
    """Raises ``RuntimeError`` in its constructor (``when="init"``), when fitting starts
    (``"fit"``), or never (``"never"``); with ``job=N``, only in job N of a sweep."""

    def __init__(
        self, when: Literal["init", "fit", "never"] = "fit", job: int | None = None
    ) -> None:
        super().__init__()
        if job is not None and HydraConfig.get().job.num != job:
            when = "never"
        if when == "init":
            raise RuntimeError("simulated bug in a constructor")
        self.when = when

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.when == "fit":
            raise RuntimeError("simulated bug in a callback")
