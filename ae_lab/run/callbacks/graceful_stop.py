"""A stop asked for (SIGTERM, a first Ctrl-C: :mod:`ae_lab.run.interrupts`) ends an evaluation at
the end of its current batch: a long validation, in the fit or after it, never keeps a run going.

Lightning stops its training loop at the end of the current batch by itself; its evaluation loop
does much the same, but as an undocumented detail that lets the last batch complete. This callback
makes it the lab's promise, at every batch of every evaluation (the fit's validations, the sanity
check, the final validation and test). A validation of the fit stopped this way is dropped, never
half-counted: its epoch-level metrics are logged and scored only when it ends, and
:class:`~ae_lab.run.callbacks.ResumableCheckpoint` saves the state it started from, so the resumed
run does that validation again.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException


class GracefulStop(L.Callback):
    """Ends an evaluation at the end of the batch during which a stop was asked for."""

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        _stop_if_asked(trainer)

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        _stop_if_asked(trainer)


def _stop_if_asked(trainer: L.Trainer) -> None:
    if trainer.received_sigterm:  # how Lightning's training loop stops, raised where it does
        raise SIGTERMException
