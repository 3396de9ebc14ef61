"""ResumableCheckpoint: Lightning's state key (checkpoints resume into both classes), last.ckpt
always the latest state, and saving every_n_train_steps as Lightning does."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from ae_lab.errors import UserError
from ae_lab.run.callbacks import ResumableCheckpoint
from ae_lab.run.train import run
from tests.conftest import TINY_RUN


def test_the_state_key_is_model_checkpoints_for_the_same_arguments(tmp_path) -> None:
    for kwargs in ({"monitor": "val/loss", "mode": "min"}, {"every_n_train_steps": 5}):
        ours = ResumableCheckpoint(dirpath=tmp_path, **kwargs)
        theirs = ModelCheckpoint(dirpath=tmp_path, **kwargs)
        assert ours.state_key == theirs.state_key


def _train_two_epochs(compose, mnist_root, mode: str) -> Path:
    """2 epochs of 2 batches, the best chosen by the step: every epoch improves (max) or none
    after the first (min)."""
    overrides = ["callbacks=none", f"data.root={mnist_root}", *TINY_RUN[1:6],
                 "trainer.max_epochs=2", "callbacks.model_checkpoint.monitor=step",
                 f"callbacks.model_checkpoint.mode={mode}"]  # fmt: skip
    cfg = compose(overrides)
    run(cfg)
    return Path(cfg.paths.output_dir) / "checkpoints"


def _state(path: Path) -> tuple[int, int, dict]:
    saved = torch.load(path, map_location="cpu", weights_only=False)
    return saved["epoch"], saved["global_step"], saved["state_dict"]


def test_last_holds_the_latest_state_when_the_best_is_older(compose, mnist_root) -> None:
    """Lightning 2.6 writes last.ckpt only beside a new best; here it is the latest state."""
    folder = _train_two_epochs(compose, mnist_root, "min")
    best, last = folder / "best-epoch000.ckpt", folder / "last.ckpt"
    (best_epoch, best_step, best_weights), (epoch, step, weights) = _state(best), _state(last)
    assert (best_epoch, best_step, epoch, step) == (0, 2, 1, 4)
    assert any(not torch.equal(best_weights[k], weights[k]) for k in weights)


def test_saving_every_n_train_steps_still_saves_at_those_steps(tmp_path) -> None:
    """With ``every_n_train_steps`` it saves at those steps, as Lightning's ModelCheckpoint does."""

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(4, 1)

        def training_step(self, batch, batch_idx):
            return self.net(batch[0]).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    saved = {}
    for kind in (ResumableCheckpoint, ModelCheckpoint):
        folder = tmp_path / kind.__name__
        checkpoint = kind(dirpath=folder, every_n_train_steps=2, save_top_k=-1,
                          filename="{step}")  # fmt: skip
        trainer = L.Trainer(max_epochs=1, callbacks=[checkpoint], logger=False,
                            enable_progress_bar=False, enable_model_summary=False,
                            default_root_dir=tmp_path)  # fmt: skip
        data = DataLoader(TensorDataset(torch.randn(40, 4)), batch_size=8)
        trainer.fit(Tiny(), data)
        saved[kind] = sorted(p.name for p in folder.glob("*.ckpt"))
    assert saved[ResumableCheckpoint] == saved[ModelCheckpoint] == ["step=2.ckpt", "step=4.ckpt"]


def test_a_monitor_no_validation_logs_is_refused_before_the_first_epoch(compose, mnist_root):
    """Lightning refused it after the first validation, an epoch later."""
    cfg = compose(
        [f"data.root={mnist_root}", *TINY_RUN, "callbacks.model_checkpoint.monitor=val/los"]
    )
    with pytest.raises(UserError) as refused:
        run(cfg)
    message = str(refused.value)
    assert "callbacks.model_checkpoint.monitor=val/los: no validation logs it" in message
    assert "(did you mean val/loss?)" in message and "val/ssim" in message
    assert not list((Path(cfg.paths.output_dir) / "checkpoints").glob("*.ckpt"))


@pytest.mark.parametrize(
    ("model", "monitor"),
    [("ae", "train/loss"), ("ae", "epoch"), ("linear_ae", "val/identity_error")],
)
def test_monitors_logged_later_or_by_a_callback_are_accepted(compose, mnist_root, model, monitor):
    cfg = compose([f"model={model}", f"data.root={mnist_root}", *TINY_RUN,
                   f"callbacks.model_checkpoint.monitor={monitor}"])  # fmt: skip
    metrics = run(cfg)
    assert list((Path(cfg.paths.output_dir) / "checkpoints").glob("best-*.ckpt"))
    assert "test/loss" in metrics
