"""The batches of one split, in an order that depends only on ``(seed, epoch)``; resumable mid-epoch.

:class:`Batches` replaces a ``DataLoader`` over :class:`~ae_lab.data.arrays.IndexedImages`: a batch
is one index of the arrays it holds (a tensor in memory, on the accelerator, or a memory map), so
there is nothing for worker processes or collation to do. What a ``DataLoader`` and its samplers
gave, it gives too:

- **shuffling** by a permutation drawn from ``(seed, epoch)`` alone, not from the global RNG: a run
  resumed from a checkpoint sees the same order as one that never stopped;
- **DDP sharding**, the way ``DistributedSampler`` does it (every rank draws the same permutation
  and takes every ``world_size``-th index from ``rank``), because Lightning injects samplers only
  into ``torch`` DataLoaders. Training drops the tail that does not divide evenly (and then the
  incomplete last batch), so every rank runs the same number of steps; evaluation pads by wrapping
  around, as ``DistributedSampler`` does, so each rank gets ``ceil(N / world_size)`` images;
- **``__len__``**, so Lightning knows the epoch's length without prefetching;
- **``state_dict`` / ``load_state_dict``** (Lightning's ``_Stateful`` protocol): the fit loop stores
  them in its checkpoints, so a run stopped in the middle of an epoch resumes at the next batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from ae_lab.data.arrays import IndexedImages

log = logging.getLogger(__name__)


def permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """A permutation of ``range(n)`` that depends only on ``(seed, epoch)`` (int64, on the CPU)."""
    rng = np.random.default_rng([seed % (1 << 64), epoch % (1 << 64)])
    return torch.from_numpy(rng.permutation(n))


class Batches:
    """``(images, labels)`` batches of ``data`` for one rank of ``world_size``.

    Args:
        data: the split.
        batch_size: images per batch (on this rank).
        shuffle: a fresh permutation every epoch (else the split's own order).
        drop_last: drop an incomplete last batch (unless it would be the only one).
        seed: seeds the permutations; the same on every rank.
        rank, world_size: this process's share under DDP (``trainer.global_rank``/``world_size``).
        epoch: returns the current epoch (``trainer.current_epoch``); read when an epoch's first
            batch is taken, like ``DistributedSampler.set_epoch`` before iterating.
        pin_memory: pin each batch in page-locked memory (for a faster copy to a GPU).
    """

    def __init__(
        self,
        data: IndexedImages,
        batch_size: int,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        epoch: Callable[[], int] = lambda: 0,
        pin_memory: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, {world_size}), got {rank}")
        self.data = data
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = epoch
        self.pin_memory = bool(pin_memory)
        n = len(data)
        # this rank's share: truncated to a multiple of world_size (drop_last) or padded up to one
        self.shard_size = n // world_size if drop_last else -(-n // world_size)
        self.drop_last = bool(drop_last) and self.shard_size >= self.batch_size
        self._epoch: int | None = None  # the epoch being iterated
        self._taken = 0  # batches of it handed out so far
        self._resume: dict[str, Any] | None = None

    def __len__(self) -> int:
        if self.drop_last:
            return self.shard_size // self.batch_size
        return -(-self.shard_size // self.batch_size)

    def indices(self, epoch: int) -> torch.Tensor:
        """This rank's indices into ``data`` for ``epoch``, in the order they are batched."""
        n = len(self.data)
        order = permutation(n, self.seed, epoch) if self.shuffle else torch.arange(n)
        total = self.shard_size * self.world_size
        if total > n:  # pad by wrapping around, as DistributedSampler does
            order = torch.cat([order, order.repeat(-(-total // n))[: total - n]])
        return order[:total][self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self._batches()

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # A generator: this body runs at the first next(), once the trainer has set the epoch.
        epoch = int(self.epoch())
        start = self._resume_position(epoch)
        index = self.indices(epoch).to(self.data.device)
        self._epoch, self._taken = epoch, start
        size = self.batch_size
        for i in range(start, len(self)):
            self._taken = i + 1
            images, labels = self.data.take(index[i * size : (i + 1) * size])
            if self.pin_memory:
                images, labels = images.pin_memory(), labels.pin_memory()
            yield images, labels

    # ---- Lightning's _Stateful protocol ----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Where the epoch in progress stands: its number and how many batches were taken."""
        if self._resume is not None:  # loaded but not used yet: hand it on unchanged
            return dict(self._resume)
        return {
            "epoch": self._epoch,
            "batches": self._taken,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
            "size": len(self.data),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at the next batch of the epoch ``state`` was saved in (used by the next
        ``iter()`` that starts that epoch)."""
        self._resume = dict(state)

    def _resume_position(self, epoch: int) -> int:
        state, self._resume = self._resume, None
        if state is None or state.get("epoch") != epoch or not state.get("batches"):
            return 0
        same = {
            "seed": self.seed,
            "shuffle": self.shuffle,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
            "size": len(self.data),
        }
        changed = {k: (state.get(k), v) for k, v in same.items() if state.get(k) != v}
        if changed:
            what = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
            log.warning(
                "resuming in the middle of epoch %d, but the batches changed (%s): the epoch "
                "restarts from its first batch",
                epoch,
                what,
            )
            return 0
        return min(int(state["batches"]), len(self))
