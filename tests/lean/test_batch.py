"""The lean batch does what Lightning's ``advance`` does: the same hooks with the same arguments in
the same order, the same batches moved by the same transfer hooks, the same values logged, read
back and written, the same weights and progress; and steps aside where it does not apply."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import Logger
from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop
from torch.utils.data import DataLoader, TensorDataset

from ae_lab import lean


def _key(value: Any) -> Any:
    """A comparable summary of a hook argument (tensors by their values)."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), round(float(value.double().sum()), 5))
    if isinstance(value, dict):
        return {k: _key(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_key(v) for v in value]
    return value


class Recorder(L.Callback):
    """Every batch hook with its arguments, and the metrics the trainer holds at each."""

    def __init__(self, calls: list) -> None:
        self.calls = calls

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.calls.append((
            "cb.on_train_batch_start", batch_idx, _key(batch), trainer.global_step,
            pl_module._current_fx_name, _key(dict(trainer.callback_metrics)),
            _key(dict(trainer.progress_bar_metrics)),
        ))  # fmt: skip

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.calls.append((
            "cb.on_train_batch_end", batch_idx, _key(outputs), _key(batch), trainer.global_step,
            pl_module._current_fx_name,
        ))  # fmt: skip
        pl_module.log("cb/step", float(trainer.global_step), on_step=True, on_epoch=False)

    def on_validation_end(self, trainer, pl_module):
        self.calls.append(("cb.on_validation_end", _key(dict(trainer.callback_metrics))))

    def on_train_epoch_end(self, trainer, pl_module):
        self.calls.append((
            "cb.on_train_epoch_end", _key(dict(trainer.callback_metrics)),
            _key(dict(trainer.progress_bar_metrics)), _key(dict(trainer.logged_metrics)),
        ))  # fmt: skip


class Written(Logger):
    """A logger that keeps what it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list = []

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.written.append((step, _key(dict(metrics))))


class Pairs(L.LightningDataModule):
    """Random pairs as uint8-like integers, made float after the transfer (as the lab's data
    modules do), with each transfer hook recorded."""

    def __init__(self, calls: list) -> None:
        super().__init__()
        self.calls = calls
        generator = torch.Generator().manual_seed(0)
        # 44 pairs: the last batch of an epoch is smaller, so values logged without a batch size
        # are averaged over the epoch by the sizes Lightning takes from the batch
        self.x = torch.randint(0, 255, (44, 8), generator=generator)
        self.y = torch.randn(44, 8, generator=generator)

    def train_dataloader(self):
        return DataLoader(TensorDataset(self.x, self.y), batch_size=8)

    def val_dataloader(self):
        return DataLoader(TensorDataset(self.x[:16], self.y[:16]), batch_size=8)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        self.calls.append(("dm.transfer_batch_to_device", str(device), dataloader_idx))
        return [t.to(device) for t in batch]

    def on_after_batch_transfer(self, batch, dataloader_idx):
        self.calls.append(("dm.on_after_batch_transfer", _key(batch)))
        x, y = batch
        return x.float() / 255, y


class Regression(L.LightningModule):
    """A small net that logs on some steps (to the bar, on step and epoch), steps a scheduler
    every batch and records its own batch hooks."""

    def __init__(self, calls: list) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 8)
        )
        self.calls = calls

    def on_before_batch_transfer(self, batch, dataloader_idx):
        self.calls.append(("lm.on_before_batch_transfer", self._current_fx_name))
        return batch

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        if batch_idx % 3 == 0:
            self.log("train/loss", loss, prog_bar=True)
        self.log("train/both", loss * 2, on_step=True, on_epoch=True)  # weighted by batch size
        return {"loss": loss, "index": batch_idx}

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", torch.nn.functional.mse_loss(self.net(x), y), prog_bar=True)

    def on_train_batch_start(self, batch, batch_idx):
        self.calls.append(("lm.on_train_batch_start", batch_idx, self._current_fx_name))

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.calls.append(("lm.on_train_batch_end", batch_idx, self._current_fx_name))

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.05)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


class Manual(Regression):
    """The same net, optimized by hand."""

    def __init__(self, calls: list) -> None:
        super().__init__(calls)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        loss = super().training_step(batch, batch_idx)["loss"]
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        self.lr_schedulers().step()
        return loss


class Stopper(Regression):
    """Ends each epoch at its fourth batch (``on_train_batch_start`` returning -1)."""

    def on_train_batch_start(self, batch, batch_idx):
        super().on_train_batch_start(batch, batch_idx)
        return -1 if batch_idx == 3 else None


def train(
    lean_run: bool, tmp_path: Path, model_class: type = Regression, **trainer_args
) -> dict[str, Any]:
    """Two epochs with validation twice an epoch; everything the run showed."""
    L.seed_everything(0, verbose=False)
    calls: list = []
    model, data, logger = model_class(calls), Pairs(calls), Written()
    options = dict(
        max_epochs=2, callbacks=[Recorder(calls)], logger=logger, log_every_n_steps=2,
        val_check_interval=0.5, num_sanity_val_steps=0, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer = L.Trainer(**{**options, **trainer_args})
    if lean_run:
        assert lean.install(trainer)
    trainer.fit(model, datamodule=data)
    return {
        "calls": calls,
        "written": logger.written,
        "weights": {k: v.clone() for k, v in model.state_dict().items()},
        "progress": trainer.fit_loop.state_dict(),
        "global_step": trainer.global_step,
        "lr": trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None,
        "trainer": trainer,
    }


def assert_same_run(tmp_path: Path, **args) -> L.Trainer:
    ours = train(True, tmp_path / "lean", **args)
    theirs = train(False, tmp_path / "stock", **args)
    for name in ("calls", "written", "progress", "global_step", "lr"):
        assert ours[name] == theirs[name], name
    for name, value in theirs["weights"].items():
        torch.testing.assert_close(ours["weights"][name], value, rtol=0, atol=0, msg=name)
    return ours["trainer"]


def test_the_lean_batch_runs_as_lightnings_own(tmp_path, monkeypatch):
    fallbacks = count_fallbacks(monkeypatch)
    trainer = assert_same_run(tmp_path)
    assert isinstance(trainer.fit_loop.epoch_loop, lean.LeanTrainingEpochLoop)
    assert trainer.global_step == 12
    assert len(fallbacks) == 12  # all of them Lightning's own run's: the lean run handed none over


def test_validating_every_other_epoch_as_lightnings_own(tmp_path):
    """Whether an epoch validates is found once an epoch (Lightning asks after every batch)."""
    trainer = assert_same_run(tmp_path, max_epochs=3, check_val_every_n_epoch=2)
    assert trainer.fit_loop.epoch_loop._epoch is None  # (outside an epoch: Lightning's answer)


def test_a_manually_optimized_module_as_lightnings_own(tmp_path):
    assert_same_run(tmp_path, model_class=Manual)


def test_ending_the_epoch_from_on_train_batch_start_as_lightnings_own(tmp_path):
    trainer = assert_same_run(tmp_path, model_class=Stopper)
    assert trainer.global_step == 6  # three steps an epoch


def test_under_a_profiler_as_lightnings_own(tmp_path):
    trainer = assert_same_run(tmp_path, profiler="simple")
    recorded = trainer.profiler.recorded_durations
    assert any(name.endswith("Recorder.on_train_batch_end") for name in recorded)
    assert any("on_after_batch_transfer" in name for name in recorded)
    assert any(name.endswith("train_dataloader_next") for name in recorded)  # the fetch
    assert "run_training_batch" in recorded


def test_the_loop_reads_logged_values_back_only_when_they_changed(tmp_path, monkeypatch):
    """Lightning reads every logged value back after every batch (a device sync for each bar
    value on a GPU); the lean loop after the batches where something was logged, the first of an
    epoch and the first after a validation run."""
    from lightning.pytorch.trainer.connectors.logger_connector.logger_connector import (
        _LoggerConnector,
    )

    reads: list[int] = []
    original = _LoggerConnector.on_batch_end

    def counted(self):
        if self.trainer.training:  # (the validation loop reads its own after each of its batches)
            reads.append(self.trainer.fit_loop.epoch_loop.batch_idx)
        original(self)

    monkeypatch.setattr(_LoggerConnector, "on_batch_end", counted)

    class Quiet(Regression):
        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            if batch_idx == 4:
                self.log("train/loss", loss, prog_bar=True)
            return loss

    train(True, tmp_path, model_class=Quiet, max_epochs=1, callbacks=[], val_check_interval=1.0)
    assert reads == [0, 4]  # the epoch's first batch, the one that logged


def count_fallbacks(monkeypatch) -> list:
    """The batch indices at which the lean loop handed a batch to Lightning's own ``advance``."""
    fallbacks: list = []
    original = _TrainingEpochLoop.advance

    def advance(self, data_fetcher):
        fallbacks.append(self.batch_idx + 1)
        return original(self, data_fetcher)

    monkeypatch.setattr(_TrainingEpochLoop, "advance", advance)
    return fallbacks


def test_a_restart_falls_back_to_lightnings_advance(tmp_path, monkeypatch):
    """The first batch after resuming from a checkpoint saved within an epoch runs Lightning's own
    ``advance`` (its restart bookkeeping), the rest run lean; ``tests/test_resume.py`` checks that
    resumed runs train as unbroken ones."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    def trainer(**args) -> L.Trainer:
        trainer = L.Trainer(
            max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
            num_sanity_val_steps=0, default_root_dir=tmp_path, **args,
        )  # fmt: skip
        assert lean.install(trainer)
        return trainer

    saving = ModelCheckpoint(tmp_path / "ckpt", "{step}", every_n_train_steps=3, save_top_k=-1)
    trainer(callbacks=[saving]).fit(Regression([]), datamodule=Pairs([]))
    fallbacks = count_fallbacks(monkeypatch)
    resumed = trainer()
    resumed.fit(Regression([]), datamodule=Pairs([]), ckpt_path=tmp_path / "ckpt" / "step=3.ckpt")
    assert resumed.global_step == 12
    assert fallbacks == [3]  # the fourth batch of the first epoch (index 3), then lean again


def test_install_leaves_an_unknown_loop_alone(tmp_path):
    trainer = L.Trainer(logger=False, default_root_dir=tmp_path)

    class Custom(_TrainingEpochLoop):
        pass

    custom = Custom(trainer)
    trainer.fit_loop.epoch_loop = custom
    assert not lean.install(trainer)
    assert trainer.fit_loop.epoch_loop is custom


def test_install_keeps_the_trainers_step_limits(tmp_path):
    trainer = L.Trainer(logger=False, default_root_dir=tmp_path, max_steps=7, min_steps=3)
    assert lean.install(trainer)
    assert (trainer.fit_loop.epoch_loop.max_steps, trainer.fit_loop.epoch_loop.min_steps) == (7, 3)
    fast = L.Trainer(logger=False, default_root_dir=tmp_path, fast_dev_run=2)
    assert lean.install(fast)
    assert fast.fit_loop.epoch_loop.max_steps == 2


class Counted(Regression):
    """Counts, in a buffer (which comes back from spawned processes with the weights), the
    batches the lean loop ran."""

    def __init__(self, calls: list) -> None:
        super().__init__(calls)
        self.register_buffer("lean_batches", torch.zeros(()))

    def training_step(self, batch, batch_idx):
        loop = self.trainer.fit_loop.epoch_loop
        if isinstance(loop, lean.LeanTrainingEpochLoop) and loop.setups.get().lean_batch:
            self.lean_batches += 1
        return super().training_step(batch, batch_idx)


def test_under_ddp_the_batch_runs_lean(tmp_path):
    """Two CPU processes (gloo): every batch of each rank ran through the lean loop, and the
    weights are Lightning's own."""
    args = {"strategy": "ddp_spawn", "accelerator": "cpu", "devices": 2,
            "callbacks": [], "logger": False, "max_epochs": 1, "val_check_interval": 1.0}  # fmt: skip
    ours = train(True, tmp_path / "lean", model_class=Counted, **args)["weights"]
    theirs = train(False, tmp_path / "stock", model_class=Counted, **args)["weights"]
    assert ours.pop("lean_batches") == 3  # 44 pairs, 2 ranks, batches of 8
    assert theirs.pop("lean_batches") == 0
    for name, value in theirs.items():
        torch.testing.assert_close(ours[name], value, rtol=0, atol=0, msg=name)
