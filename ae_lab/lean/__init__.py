"""Lightning's training loop without its per-step dispatch: the same work, the same hooks in the
same order, the same progress counters and checkpoints; ~0.4 ms a step less on a CPU.

On the dense autoencoder at batch 32 a training step is ~3.6 ms of arithmetic on a CPU core, and
Lightning's machinery around it (batch fetch and transfer hooks, callback and module hooks, the
closure and wrappers of its optimizer step, ``self.log``, the logger connector, the epoch loop) was
~0.7 ms more, spread over a dozen places of 30-120 us each (``benchmarks/step_profile.py
lean_step=false``); with this package it is ~0.3 ms (``lean_step=true``), not counting torch's
own ``Optimizer.step`` wrapper, which a bare loop pays too. It replaces three of Lightning's
internal objects, each with a subclass of Lightning's own that runs Lightning's work directly where
the setup is one it knows, and hands over to Lightning's code everywhere else:

- :mod:`ae_lab.lean.batch`: the training epoch loop's ``advance`` (one batch: fetch, transfer
  hooks, batch hooks, the step, reading the logged values back);
- :mod:`ae_lab.lean.step`: the automatic optimization (training step, zero_grad, backward, the
  optimizer step and their hooks);
- :mod:`ae_lab.lean.results`: the store of ``self.log`` values (``self.log`` ~0.7 ms -> ~0.3 ms a call);

with :mod:`ae_lab.lean.hooks` finding once what each callback, the module and the datamodule
override, so that only hooks that do something are called.

``lean_step: false`` in the config (``python train.py lean_step=false``) runs Lightning's own loop.
With a profiler (``trainer.profiler=simple``, ...), the sections of hooks nobody overrides and of
Lightning's own dispatch are not recorded; ``lean_step=false`` brings them back.

This relies on Lightning's internal loop classes and is written and tested against Lightning 2.6
(``tests/lean/``): :func:`install` leaves a trainer whose loops are not the expected ones as it is,
and ``ae_lab.train`` runs Lightning's own loop when this package cannot be imported.
"""

from __future__ import annotations

import logging

import lightning as L
from lightning.pytorch.loops.optimization.automatic import _AutomaticOptimization
from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop
from lightning.pytorch.trainer.connectors.logger_connector.result import _ResultCollection

from ae_lab.lean.batch import LeanTrainingEpochLoop
from ae_lab.lean.results import LeanResults
from ae_lab.lean.step import LeanAutomaticOptimization

__all__ = ["LeanAutomaticOptimization", "LeanResults", "LeanTrainingEpochLoop", "install"]

log = logging.getLogger(__name__)


def install(trainer: L.Trainer) -> bool:
    """Put the lean loop in a freshly built ``trainer`` (before ``fit``); False, and the trainer
    unchanged, when its loops are not the ones this was written for."""
    epoch_loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    expected = (
        type(epoch_loop) is _TrainingEpochLoop
        and type(epoch_loop.automatic_optimization) is _AutomaticOptimization
        and type(epoch_loop._results) is _ResultCollection
        and type(epoch_loop.val_loop._results) is _ResultCollection
    )
    if not expected:
        log.debug("lean loop: Lightning's training loop is not the expected one; left as it is")
        return False
    trainer.fit_loop.epoch_loop = LeanTrainingEpochLoop(
        trainer, min_steps=epoch_loop.min_steps, max_steps=epoch_loop.max_steps
    )
    for loop in (trainer.validate_loop, trainer.test_loop):  # trainer.validate() and .test()
        if type(loop._results) is _ResultCollection:
            loop._results = LeanResults(training=False)
    return True
