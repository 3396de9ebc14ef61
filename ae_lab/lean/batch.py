"""Lightning's training batch without its per-batch dispatch: the same work and hooks, in the same
order.

``_TrainingEpochLoop.advance`` runs, for every batch: the batch-transfer hooks (each looked up on
the module and the datamodule with ``is_overridden``, then called through the profiler), a generic
walk of the batch to the device, ``on_train_batch_start``/``end`` on every callback whether it
overrides them or not (formatting a profiler name from each callback's ``state_key`` first), the
module's and the strategy's hooks, the signature of ``training_step`` read again with ``inspect``,
and, after the step, the logger connector reading every logged value back (``metrics()``: a
``.item()``, a device sync on a GPU, for each progress-bar value) although nothing was logged
since the last batch. :class:`LeanTrainingEpochLoop` runs the same batch with what was found once
(:class:`~ae_lab.lean.hooks.Setup`), calls only hooks that do something, and reads the logged values
back only when the log changed since it last did (:class:`~ae_lab.lean.results.LeanResults`
counts the changes) or the epoch or a validation run could have changed what they were read into.

It falls back to Lightning's own ``advance`` for what it does not cover: the first batch after a
restart from a checkpoint (Lightning's restart bookkeeping), a ``training_step`` that takes the
dataloader's iterator, a strategy other than one device or DDP, or one with its own batch hooks.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.loops.fetchers import (
    _DataFetcher,
    _DataLoaderIterDataFetcher,
    _profile_nothing,
)
from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop

from ae_lab.lean.hooks import Setup, SetupCache
from ae_lab.lean.results import LeanResults
from ae_lab.lean.step import LeanAutomaticOptimization


@dataclass(frozen=True)
class _Epoch:
    """What holds for the whole of one run of the epoch loop."""

    setup: Setup
    lean: bool  # its batches run lean
    distributed: bool  # sigterm is broadcast before each batch
    validates: bool  # Lightning's ``_should_check_val_epoch``


class LeanTrainingEpochLoop(_TrainingEpochLoop):
    """Lightning's training epoch loop, whose ``advance`` (one batch) runs directly where the
    setup allows (module docstring); with :class:`LeanAutomaticOptimization` as its optimizer
    step and :class:`LeanResults` for the training and validation ``self.log``."""

    def __init__(
        self, trainer: L.Trainer, min_steps: int | None = None, max_steps: int = -1
    ) -> None:
        super().__init__(trainer, min_steps=min_steps, max_steps=max_steps)
        self.setups = SetupCache(trainer)
        self.automatic_optimization = LeanAutomaticOptimization(trainer, self.setups)
        self._results = LeanResults(training=True)
        self.val_loop._results = LeanResults(training=False)
        #: what the logged values were last read back at (see :meth:`_read_logged_values`)
        self._read_at: tuple | None = None
        #: what holds for the whole of the epoch being run (:meth:`on_run_start`), else None
        self._epoch: _Epoch | None = None

    def applies(self, setup: Setup, data_fetcher: _DataFetcher) -> bool:
        """Whether this epoch's batches can run lean (else Lightning's own ``advance`` runs)."""
        return setup.lean_batch and not isinstance(data_fetcher, _DataLoaderIterDataFetcher)

    def run(self, data_fetcher: _DataFetcher) -> None:
        try:
            super().run(data_fetcher)
        finally:
            self._epoch = None

    def on_run_start(self, data_fetcher: _DataFetcher) -> None:
        """Lightning's, then what holds for the whole epoch, found once (Lightning finds each at
        every batch): the :class:`~ae_lab.lean.hooks.Setup`, whether the batches run lean,
        whether sigterm is broadcast, whether this epoch validates; and, without a profiler, a
        fetch that does not name a profiler section (two f-strings and calls a batch)."""
        super().on_run_start(data_fetcher)
        setup = self.setups.get()
        trainer = self.trainer
        self._epoch = _Epoch(
            setup=setup,
            lean=self.applies(setup, data_fetcher),
            distributed=(
                torch.distributed.is_available()
                and torch.distributed.is_initialized()
                and trainer.world_size > 1
            ),
            validates=super()._should_check_val_epoch(),
        )
        if not setup.profiling:
            data_fetcher._start_profiler = data_fetcher._stop_profiler = _profile_nothing

    def _should_check_val_epoch(self) -> bool:
        """Whether this epoch validates: found at its start (Lightning asks after every batch,
        two ``is_overridden`` in ``trainer.enable_validation``); Lightning's answer outside one."""
        if self._epoch is None:
            return super()._should_check_val_epoch()
        return self._epoch.validates

    def update_lr_schedulers(self, interval: str, update_plateau_schedulers: bool) -> None:
        """Lightning's, which with no schedulers finds nothing to step (after asking whether the
        batch accumulates, after every batch): then nothing."""
        if self.trainer.lr_scheduler_configs:
            super().update_lr_schedulers(interval, update_plateau_schedulers)

    def advance(self, data_fetcher: _DataFetcher) -> None:
        """One training batch: Lightning 2.6's ``_TrainingEpochLoop.advance``, for the setups
        :meth:`applies` accepts, with the hooks of :class:`~ae_lab.lean.hooks.Setup`."""
        epoch = self._epoch
        if epoch is None or not epoch.lean or self.restarting:
            self._read_at = None
            return super().advance(data_fetcher)
        setup = epoch.setup
        self.val_loop.restarting = False
        trainer = self.trainer
        if epoch.distributed:
            self._broadcast_sigterm_tensor()

        batch, _, __ = next(data_fetcher)
        batch_idx = self.batch_idx + 1
        self.batch_progress.is_last_batch = data_fetcher.done
        batch = self._to_device(setup, trainer.precision_plugin.convert_input(batch))

        self.batch_progress.increment_ready()
        connector = trainer._logger_connector
        self._batch_start(connector, batch)

        batch_output = None
        skip_rest_of_epoch = False
        if batch is None:
            self._warning_cache.warn(
                "train_dataloader yielded None. If this was on purpose, ignore this warning..."
            )
        else:
            response = setup.call(trainer, "on_train_batch_start", batch, batch_idx)
            skip_rest_of_epoch = response == -1
            if skip_rest_of_epoch:
                self.batch_progress.increment_by(0, is_last_batch=True)
            else:
                self.batch_progress.increment_started()
                kwargs = OrderedDict(batch=batch)
                if setup.takes_batch_idx:
                    kwargs["batch_idx"] = batch_idx
                batch_output = setup.in_section(
                    trainer, lambda: "run_training_batch", self._optimize, setup, batch_idx, kwargs
                )

        self.batch_progress.increment_processed()
        if trainer.lr_scheduler_configs:  # (with none, these find nothing to step)
            self.update_lr_schedulers("step", update_plateau_schedulers=False)
            if self._num_ready_batches_reached():
                self.update_lr_schedulers("epoch", update_plateau_schedulers=False)
        if skip_rest_of_epoch:
            raise StopIteration

        setup.call(trainer, "on_train_batch_end", batch_output, batch, batch_idx)
        self._read_logged_values(connector)
        self.batch_progress.increment_completed()
        # the connector writes the step's values to the loggers every log_every_n_steps (or when
        # stopping, or in a fast dev run); asked only then, it decides as it would every batch
        every = trainer.log_every_n_steps
        due = every > 0 and ((self._batches_that_stepped + 1) % every == 0 or trainer.should_stop)
        if due or trainer.fast_dev_run:
            connector.update_train_step_metrics()

    def _optimize(self, setup: Setup, batch_idx: int, kwargs: OrderedDict) -> Any:
        if self.trainer.lightning_module.automatic_optimization:
            optimizer = self.trainer.optimizers[0]
            return self.automatic_optimization.run(optimizer, batch_idx, kwargs, setup)
        return self.manual_optimization.run(kwargs)

    def _batch_start(self, connector: Any, batch: Any) -> None:
        """The logger connector's ``on_batch_start``, on this loop's results (the trainer's
        while it trains, which Lightning finds through three properties)."""
        if connector._first_loop_iter is None:
            connector._first_loop_iter = True
        elif connector._first_loop_iter is True:
            connector._first_loop_iter = False
        results = self._results
        results.batch = batch
        results.batch_size = None
        results.dataloader_idx = None

    def _to_device(self, setup: Setup, batch: Any) -> Any:
        """``on_before_batch_transfer``, ``transfer_batch_to_device``, ``on_after_batch_transfer``:
        the overridden ones; the base hooks' work (nothing, ``move_data_to_device``) otherwise."""
        trainer = self.trainer
        transfer = setup.transfer
        if transfer["on_before_batch_transfer"] is not None:
            batch = setup.call_transfer(trainer, "on_before_batch_transfer", batch, 0)
        device = trainer.strategy.root_device
        if transfer["transfer_batch_to_device"] is not None:
            batch = setup.call_transfer(trainer, "transfer_batch_to_device", batch, device, 0)
        else:
            batch = move_data_to_device(batch, device)
        if transfer["on_after_batch_transfer"] is not None:
            batch = setup.call_transfer(trainer, "on_after_batch_transfer", batch, 0)
        return batch

    def _read_logged_values(self, connector: Any) -> None:
        """The logger connector's ``on_batch_end``: the logged values read back into the progress
        bar's, the callbacks' and the loggers' metrics. Skipped (but for dropping the batch) when
        it would read the same values into the same dicts as last time: neither this loop's nor
        validation's log changed since, and the epoch and the metric dicts are the same."""
        results = self._results
        state = (
            results.changes,
            self.val_loop._results.changes,
            self.trainer.current_epoch,
            id(connector._callback_metrics),
            id(connector._progress_bar_metrics),
            id(connector._logged_metrics),
        )
        if state != self._read_at:
            connector.on_batch_end()
            self._read_at = state
        else:
            results.batch = None
            results.batch_size = None
