"""The lean optimizer step does what Lightning's own step does: same weights, same hooks in the same
order, same progress counters; and steps aside where it does not apply."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loops.optimization.automatic import _AutomaticOptimization
from torch.utils.data import DataLoader, TensorDataset

import ae_lab
from ae_lab import lean
from ae_lab.compose import compose_config
from ae_lab.train import build_trainer, install_lean_step

HOOKS = (
    "on_before_zero_grad",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
)


class Recorder(L.Callback):
    """Records every optimization hook Lightning calls, with the step and what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def on_before_zero_grad(self, trainer, pl_module, optimizer):
        self.calls.append(("cb.on_before_zero_grad", trainer.global_step, type(optimizer)))

    def on_before_backward(self, trainer, pl_module, loss):
        self.calls.append(("cb.on_before_backward", trainer.global_step, round(loss.item(), 6)))

    def on_after_backward(self, trainer, pl_module):
        grads = [p.grad is not None for p in pl_module.parameters()]
        self.calls.append(("cb.on_after_backward", trainer.global_step, all(grads)))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        norm = torch.cat([p.grad.flatten() for p in pl_module.parameters()]).norm().item()
        self.calls.append(("cb.on_before_optimizer_step", trainer.global_step, round(norm, 6)))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.calls.append(("cb.on_train_batch_end", trainer.global_step, sorted(outputs)))


class Regression(L.LightningModule):
    """A linear map fitted to random pairs; records its own optimization hooks, and what
    ``_current_fx_name`` is when its hooks run (``self.log`` checks it)."""

    def __init__(self, record: list) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 8)
        )
        self.record = record

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train/loss", loss)
        return {"loss": loss, "batch": batch_idx}

    def on_before_zero_grad(self, optimizer):
        self.record.append(("lm.on_before_zero_grad", self._current_fx_name))

    def on_after_backward(self):
        self.record.append(("lm.on_after_backward", self._current_fx_name))

    def on_before_optimizer_step(self, optimizer):
        self.record.append(("lm.on_before_optimizer_step", self._current_fx_name))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.05)


def train(
    lean_run: bool, tmp_path: Path, model_class: type = Regression, **trainer_args
) -> tuple[dict, list, L.Trainer]:
    """Six steps on fixed data; the weights, every recorded hook and the trainer."""
    L.seed_everything(0, verbose=False)
    record: list = []
    model = model_class(record)
    data = TensorDataset(torch.randn(48, 8), torch.randn(48, 8))
    recorder = Recorder()
    trainer = L.Trainer(
        max_epochs=1, callbacks=[recorder], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        **trainer_args,
    )  # fmt: skip
    if lean_run:
        assert lean.install(trainer)
    trainer.fit(model, DataLoader(data, batch_size=8))
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    return weights, recorder.calls + record, trainer


def assert_same_run(
    tmp_path: Path, model_class: type = Regression, **trainer_args
) -> tuple[dict, L.Trainer]:
    ours, our_calls, our_trainer = train(True, tmp_path / "lean", model_class, **trainer_args)
    theirs, their_calls, their_trainer = train(
        False, tmp_path / "stock", model_class, **trainer_args
    )
    assert our_calls == their_calls
    assert our_trainer.global_step == their_trainer.global_step
    assert our_trainer.fit_loop.state_dict() == their_trainer.fit_loop.state_dict()
    for name, value in theirs.items():
        torch.testing.assert_close(ours[name], value, rtol=0, atol=0, msg=name)
    return ours, our_trainer


def test_the_lean_step_trains_as_lightnings_own(tmp_path):
    weights, trainer = assert_same_run(tmp_path)
    assert trainer.global_step == 6
    loop = trainer.fit_loop.epoch_loop.automatic_optimization
    assert isinstance(loop, lean.LeanAutomaticOptimization)
    assert loop.setup().lean_step  # it ran lean, not Lightning's step through the fallback


class TensorRegression(Regression):
    """Returns the loss itself (as the lab's model does), not a dict."""

    def training_step(self, batch, batch_idx):
        return super().training_step(batch, batch_idx)["loss"]


def test_a_step_returning_the_loss_tensor_as_lightnings_own(tmp_path):
    _, trainer = assert_same_run(tmp_path, model_class=TensorRegression)
    assert trainer.fit_loop.epoch_loop.automatic_optimization.setup().lean_step


def test_gradient_clipping_as_lightnings_own(tmp_path):
    clipped, _ = assert_same_run(tmp_path / "clip", gradient_clip_val=1e-3)
    free, _ = assert_same_run(tmp_path / "free")
    assert not torch.equal(clipped["net.0.weight"], free["net.0.weight"])


def test_by_value_clipping_as_lightnings_own(tmp_path):
    assert_same_run(tmp_path, gradient_clip_val=1e-3, gradient_clip_algorithm="value")


def test_accumulation_falls_back_to_lightnings_step(tmp_path):
    _, trainer = assert_same_run(tmp_path, accumulate_grad_batches=2)
    assert trainer.global_step == 3
    loop = trainer.fit_loop.epoch_loop.automatic_optimization
    assert not loop.applies(loop.setup())


def test_bf16_mixed_runs_lean_and_as_lightnings_own(tmp_path):
    _, trainer = assert_same_run(tmp_path, precision="bf16-mixed")
    loop = trainer.fit_loop.epoch_loop.automatic_optimization
    assert loop.setup().lean_step


class Stepper(Regression):
    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure):
        self.record.append(("lm.optimizer_step", batch_idx))
        optimizer.step(closure=optimizer_closure)


def test_a_module_with_its_own_optimizer_step_gets_lightnings_step(tmp_path):
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, default_root_dir=tmp_path)  # fmt: skip
    lean.install(trainer)
    record: list = []
    data = TensorDataset(torch.randn(16, 8), torch.randn(16, 8))
    trainer.fit(Stepper(record), DataLoader(data, batch_size=8))
    assert [c for c in record if c[0] == "lm.optimizer_step"] == [
        ("lm.optimizer_step", 0),
        ("lm.optimizer_step", 1),
    ]
    loop = trainer.fit_loop.epoch_loop.automatic_optimization
    assert not loop.setup().lean_step


@pytest.mark.parametrize("on", [True, False])
def test_the_config_switch(on, tmp_path):
    cfg = compose_config(["trainer.accelerator=cpu", f"lean_step={str(on).lower()}"], tmp_path)
    trainer = build_trainer(cfg)
    assert isinstance(trainer.fit_loop.epoch_loop, lean.LeanTrainingEpochLoop) is on
    loop = trainer.fit_loop.epoch_loop.automatic_optimization
    assert isinstance(loop, lean.LeanAutomaticOptimization) is on
    assert isinstance(loop, _AutomaticOptimization)


def test_install_leaves_an_unknown_loop_alone(tmp_path):
    trainer = L.Trainer(logger=False, default_root_dir=tmp_path)
    sentinel = object()
    trainer.fit_loop.epoch_loop.automatic_optimization = sentinel
    assert not lean.install(trainer)
    assert trainer.fit_loop.epoch_loop.automatic_optimization is sentinel


class Lazy(torch.optim.SGD):
    """An optimizer whose step ignores the closure it is given."""

    def step(self, closure=None):
        return super().step()


class LazyRegression(Regression):
    def configure_optimizers(self):
        return Lazy(self.parameters(), lr=0.1)


def test_an_optimizer_that_skips_the_closure_is_an_error(tmp_path):
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, default_root_dir=tmp_path)  # fmt: skip
    lean.install(trainer)
    data = TensorDataset(torch.randn(8, 8), torch.randn(8, 8))
    with pytest.raises(Exception, match=r"Lazy.step\(closure\) did not call the closure"):
        trainer.fit(LazyRegression([]), DataLoader(data, batch_size=8))


class PreHooked(Regression):
    """An optimizer with a step pre-hook, which ``step`` runs before it calls the closure."""

    def training_step(self, batch, batch_idx):
        self.record.append(("lm.training_step", batch_idx))
        return super().training_step(batch, batch_idx)

    def configure_optimizers(self):
        optimizer = super().configure_optimizers()
        optimizer.register_step_pre_hook(lambda *_: self.record.append(("optimizer.pre_hook",)))
        return optimizer


class Quasi(Regression):
    """LBFGS, which calls the closure again and again."""

    def configure_optimizers(self):
        return torch.optim.LBFGS(self.parameters(), lr=0.1, max_iter=3)


def test_a_step_pre_hook_runs_before_the_training_step_as_in_lightnings_own(tmp_path):
    _, trainer = assert_same_run(tmp_path, PreHooked)
    assert not lean.step.closure_first(trainer.optimizers[0])  # so the closure goes to step()


def test_lbfgs_as_lightnings_own(tmp_path):
    _, trainer = assert_same_run(tmp_path, Quasi)
    assert not lean.step.closure_first(trainer.optimizers[0])


def test_torchs_usual_optimizers_have_their_closure_called_first():
    params = [torch.nn.Parameter(torch.zeros(2))]
    for optimizer in (torch.optim.Adam(params), torch.optim.AdamW(params), torch.optim.SGD(params)):
        assert lean.step.closure_first(optimizer)
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    handle = register_optimizer_step_pre_hook(lambda *_: None)
    try:  # a global pre-hook runs before any closure
        assert not lean.step.closure_first(torch.optim.Adam(params))
    finally:
        handle.remove()


def test_without_the_internals_lightnings_own_step_runs(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "ae_lab.lean", None)  # its import now fails
    monkeypatch.delattr(ae_lab, "lean", raising=False)
    trainer = L.Trainer(logger=False, default_root_dir=tmp_path)
    with caplog.at_level(logging.INFO, logger="ae_lab.train"):
        assert not install_lean_step(trainer)
    assert type(trainer.fit_loop.epoch_loop.automatic_optimization) is _AutomaticOptimization
    assert "Lightning's own training loop runs" in caplog.text


class Counted(Regression):
    """Counts, in a buffer (which comes back from the spawned processes with the weights), the
    steps the lean step ran."""

    def __init__(self, record: list) -> None:
        super().__init__(record)
        self.register_buffer("lean_steps", torch.zeros(()))

    def on_after_backward(self):
        loop = self.trainer.fit_loop.epoch_loop.automatic_optimization
        if isinstance(loop, lean.LeanAutomaticOptimization) and loop.applies(loop.setup()):
            self.lean_steps += 1


def test_under_ddp_as_lightnings_own(tmp_path):
    """Two CPU processes (gloo): the lean step's backward runs through DDP's gradient all-reduce
    as Lightning's does; rank 0's weights come back to this process."""
    args = {"strategy": "ddp_spawn", "accelerator": "cpu", "devices": 2}
    ours, _, _ = train(True, tmp_path / "lean", model_class=Counted, **args)
    theirs, _, _ = train(False, tmp_path / "stock", model_class=Counted, **args)
    assert ours.pop("lean_steps") == 3  # 48 pairs, 2 ranks, batches of 8: 3 steps, all lean
    assert theirs.pop("lean_steps") == 0
    L.seed_everything(0, verbose=False)
    initial = Counted([]).state_dict()
    for name, value in theirs.items():
        assert not torch.equal(value, initial[name]), f"{name} did not train"
        torch.testing.assert_close(ours[name], value, rtol=0, atol=0, msg=name)
