"""A stand-in for a long evaluation, for tests that stop a run in the middle of one: a callback that
sleeps before each batch of one evaluation and signals the run at a chosen batch of it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import lightning as L

#: Written into the run directory at the signal: its time, then each batch started after it.
RECORD = "slow_evaluation.json"


class SlowEvaluation(L.Callback):
    """Sleeps ``seconds`` before each batch of one evaluation: ``stage="fit"``, the validation of
    epoch ``epoch`` in the fit (not the sanity check); ``"validate"`` or ``"test"``, that stage of
    the final evaluation. At its batch ``at`` it writes :data:`RECORD` (``{"signalled": time.time(),
    "after": []}``, then each batch index started after it), writes ``marker`` (this process's id)
    when given, and sends ``signum`` to this process when given."""

    def __init__(
        self,
        seconds: float = 0.3,
        stage: str = "fit",
        epoch: int = 0,
        at: int = 1,
        signum: int | None = None,
        marker: str | None = None,
    ) -> None:
        self.seconds, self.stage, self.epoch, self.at = seconds, stage, epoch, at
        self.signum, self.marker = signum, marker
        self.record: dict | None = None

    def _due(self, trainer: L.Trainer) -> bool:
        if trainer.sanity_checking or trainer.state.fn != self.stage:
            return False
        return self.stage != "fit" or trainer.current_epoch == self.epoch

    def _batch(self, trainer: L.Trainer, batch_idx: int) -> None:
        if not self._due(trainer):
            return
        path = Path(trainer.default_root_dir) / RECORD
        if self.record is not None:
            self.record["after"].append(batch_idx)
            path.write_text(json.dumps(self.record))
        elif batch_idx == self.at:
            self.record = {"signalled": time.time(), "after": []}
            path.write_text(json.dumps(self.record))
            if self.marker:
                Path(self.marker).write_text(str(os.getpid()))
            if self.signum:
                os.kill(os.getpid(), self.signum)
        time.sleep(self.seconds)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._batch(trainer, batch_idx)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._batch(trainer, batch_idx)
