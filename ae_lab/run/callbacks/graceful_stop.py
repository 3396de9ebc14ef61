"""Tell :mod:`ae_lab.run.interrupts` where a fit may stop: between training batches, never inside a
validation (see that module)."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn

from ae_lab.run import interrupts


class GracefulStop(L.Callback):
    """From the first training step on, a signal stops the fit at the end of a batch; one that
    arrives during the fit's validation waits until the validation has ended."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        interrupts.take_over_in_fit()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            interrupts.hold()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        interrupts.release()
