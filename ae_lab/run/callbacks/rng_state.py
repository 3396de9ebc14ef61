"""The random generators' states travel with the checkpoint, so a resumed run draws the same noise.

A VAE samples its latent code, a denoising model its corruption: both draw from torch's global
generator at every step. Restarting from ``last.ckpt`` with the same seed is not enough, because
the seed only fixes where the generator started, not where the interrupted run had taken it.
:class:`RandomState` stores the states of torch (CPU and the training device's CUDA generator),
NumPy and Python's ``random`` in every checkpoint, and puts them back when the resumed fit starts
training.

Not when the checkpoint is loaded: between loading and the first step Lightning builds the model,
runs the sanity validation and more, and the states must reach the first step untouched. Not at
the first ``on_train_epoch_start`` either: a run resumed in the middle of an epoch does not call it.
``on_train_start`` is the last hook before the first training step in both cases.

Under DDP every rank is seeded alike, so every rank holds the same states; the checkpoint keeps
rank 0's and every rank restores them.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.trainer.states import TrainerFn


def capture(device: torch.device | None = None) -> dict[str, Any]:
    """The current states, as tensors and plain Python values (loadable with ``weights_only``)."""
    kind, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)  # noqa: NPY002 (the global state is what we keep)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [
            kind,
            torch.from_numpy(key.astype(np.int64)),
            int(pos),
            int(has_gauss),
            float(gauss),
        ],
        "python": random.getstate(),
    }
    if device is not None and device.type == "cuda" and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Put back the states :func:`capture` returned."""
    torch.set_rng_state(state["torch"])
    kind, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(key, dtype=np.uint32), pos, has_gauss, gauss))  # noqa: NPY002
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


class RandomState(L.Callback):
    """Saves the random generators' states in each checkpoint; restores them when training resumes."""

    def __init__(self) -> None:
        super().__init__()
        self._device: torch.device | None = None
        self._pending: dict[str, Any] | None = None  # loaded, to restore at on_train_start
        self._loading_to_fit = True

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._device = trainer.strategy.root_device

    def state_dict(self) -> dict[str, Any]:
        # A checkpoint written before the loaded states were used (a resumed run stopped during
        # its sanity check) passes them on unchanged.
        return self._pending if self._pending is not None else capture(self._device)

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # Lightning calls this just before load_state_dict, also when validate/test load weights
        self._loading_to_fit = trainer.state.fn == TrainerFn.FITTING

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self._loading_to_fit:  # evaluations draw from their own seeded generators
            self._pending = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is not None:
            restore(self._pending, self._device)
            self._pending = None
