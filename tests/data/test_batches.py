"""The batches of a split: order from (seed, epoch) only, DDP shards, drop_last, mid-epoch resume."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.types import _Stateful

from ae_lab.data.arrays import IndexedImages
from ae_lab.data.batches import Batches


def images(n: int = 100) -> IndexedImages:
    """Image ``i`` is filled with ``i % 256`` and labelled ``i``: a batch shows which rows it holds."""
    pixels = (torch.arange(n) % 256).to(torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    return IndexedImages(pixels, torch.arange(n))


def rows(batches, epoch: int = 0) -> list[list[int]]:
    batches.epoch = lambda: epoch
    return [labels.tolist() for _, labels in batches]


def test_batches_are_rows_of_the_split():
    data = images(10)
    (first, labels), *_ = Batches(data, 4)
    assert first.dtype == torch.uint8 and first.shape == (4, 1, 2, 2)
    assert torch.equal(first[:, 0, 0, 0].long(), labels)


def test_training_order_depends_only_on_seed_and_epoch():
    data = images()
    torch.manual_seed(1)
    a = rows(Batches(data, 10, shuffle=True, drop_last=True, seed=3), epoch=2)
    torch.manual_seed(2)  # the global RNG plays no part
    np.random.seed(5)  # noqa: NPY002
    b = rows(Batches(data, 10, shuffle=True, drop_last=True, seed=3), epoch=2)
    assert a == b
    assert a != rows(Batches(data, 10, shuffle=True, seed=3), epoch=3)
    assert a != rows(Batches(data, 10, shuffle=True, seed=4), epoch=2)
    assert sorted(sum(a, [])) == list(range(100))  # a permutation of the split
    assert sum(rows(Batches(data, 10), epoch=2), []) == list(range(100))  # no shuffle: in order


def test_drop_last_drops_only_an_incomplete_last_batch():
    data = images(25)
    kept = rows(Batches(data, 10, shuffle=True, drop_last=True))
    assert len(kept) == len(Batches(data, 10, drop_last=True)) == 2
    assert all(len(b) == 10 for b in kept)
    every = rows(Batches(data, 10))  # evaluation keeps the remainder
    assert [len(b) for b in every] == [10, 10, 5] and len(Batches(data, 10)) == 3
    # a split smaller than one batch still gives that one batch
    assert [len(b) for b in rows(Batches(images(6), 10, drop_last=True))] == [6]


@pytest.mark.parametrize("world_size", [2, 3])
def test_ddp_shards_are_disjoint_and_cover_the_epoch(world_size):
    data = images(100)
    shards = [
        sum(rows(Batches(data, 4, shuffle=True, drop_last=True, seed=7, rank=r,
                         world_size=world_size), epoch=1), [])
        for r in range(world_size)
    ]  # fmt: skip
    lengths = {len(Batches(data, 4, drop_last=True, rank=r, world_size=world_size))
               for r in range(world_size)}  # fmt: skip
    assert len(lengths) == 1  # every rank runs the same number of steps
    seen = sum(shards, [])
    assert len(seen) == len(set(seen))  # disjoint
    per_rank = (100 // world_size) // 4 * 4
    assert all(len(s) == per_rank for s in shards)
    # the shards interleave one permutation, as DistributedSampler does
    order = Batches(data, 4, shuffle=True, seed=7).indices(1).tolist()
    for r, shard in enumerate(shards):
        assert shard == order[: (100 // world_size) * world_size][r::world_size][:per_rank]


def test_ddp_evaluation_pads_so_every_image_is_seen():
    data = images(10)
    shards = [sum(rows(Batches(data, 2, rank=r, world_size=3)), []) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]  # ceil(10 / 3), padded by wrapping around
    assert set(sum(shards, [])) == set(range(10))


def test_state_dict_resumes_in_the_middle_of_an_epoch():
    data = images(100)
    make = lambda: Batches(data, 8, shuffle=True, drop_last=True, seed=1, epoch=lambda: 4)  # noqa: E731
    assert isinstance(make(), _Stateful)  # what Lightning's fit loop saves and restores
    whole = [labels.tolist() for _, labels in make()]
    stopped = make()
    it = iter(stopped)
    taken = [next(it)[1].tolist() for _ in range(5)]
    state = stopped.state_dict()
    assert state["epoch"] == 4 and state["batches"] == 5
    resumed = make()
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state  # unchanged until it is used
    rest = [labels.tolist() for _, labels in resumed]
    assert taken + rest == whole
    assert [labels.tolist() for _, labels in resumed] == whole  # the next epoch starts whole


def test_a_state_from_another_epoch_or_batching_starts_the_epoch_afresh(caplog):
    data = images(100)
    stopped = Batches(data, 8, shuffle=True, drop_last=True, epoch=lambda: 0)
    it = iter(stopped)
    next(it), next(it)
    state = stopped.state_dict()
    later = Batches(data, 8, shuffle=True, drop_last=True, epoch=lambda: 1)
    later.load_state_dict(state)
    assert len(list(later)) == len(later)
    resized = Batches(data, 10, shuffle=True, drop_last=True, epoch=lambda: 0)
    resized.load_state_dict(state)
    assert len(list(resized)) == len(resized)
    assert "restarts from its first batch" in caplog.text


def test_the_datamodule_serves_batches_for_its_rank(mnist_root):
    from ae_lab.data import MNISTDataModule

    dm = MNISTDataModule(str(mnist_root), batch_size=50, seed=2)
    train = dm.train_dataloader()
    assert isinstance(train, Batches) and train.shuffle and train.drop_last and train.seed == 2
    assert not dm.val_dataloader().shuffle
    assert sum(len(labels) for _, labels in dm.test_dataloader()) == dm.split_size("test")


def test_overfit_batches_keeps_the_same_batches_every_epoch(mnist_root):
    from ae_lab.data import MNISTDataModule

    dm = MNISTDataModule(str(mnist_root), batch_size=50)
    dm.trainer = SimpleNamespace(overfit_batches=2, global_rank=0, world_size=1,
                                 accelerator=None, current_epoch=0)  # fmt: skip
    train = dm.train_dataloader()
    assert rows(train, epoch=0) == rows(train, epoch=1)
