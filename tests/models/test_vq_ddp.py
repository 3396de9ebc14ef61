"""Under two processes (torch.distributed on the CPU, as DDP runs them) every rank makes the same
codebook updates: EMA counts and sums summed over ranks, codes restarted from rank 0's outputs.
The worker imports only the quantiser, so the processes start quickly."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ae_lab.models.quantize import VectorQuantizer


def _train_on_rank(rank: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)  # the same codebooks everywhere, as DDP starts them
        ema = VectorQuantizer(4, codebook_size=16, codebook_dim=2, ema=0.9, dead_code_steps=2)
        plain = VectorQuantizer(4, codebook_size=16, codebook_dim=2, dead_code_steps=2)
        ema.train(), plain.train()
        torch.manual_seed(100 + rank)  # different data, and different draws, on each rank
        batches = [torch.randn(3 + rank, 4) * (1 + step) for step in range(5)]
        for h in batches:
            ema(h), plain(h)
        saved = {"ema": ema.state_dict(), "plain": plain.state_dict(), "batches": batches}
        torch.save(saved, f"{out}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_every_rank_keeps_the_same_codebook(tmp_path):
    mp.spawn(_train_on_rank, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    first, second = (torch.load(tmp_path / f"{r}.pt") for r in (0, 1))
    for part in ("ema", "plain"):
        for key, value in first[part].items():
            assert torch.equal(value, second[part][key]), f"{part}.{key}"
    # without EMA only restarts move the codes: each is one of rank 0's encoder outputs
    codebook = first["plain"]["codebook"]
    vectors = [torch.cat(saved["batches"]).reshape(-1, 2) for saved in (first, second)]
    ours, theirs = ((codebook.unsqueeze(1) == v.unsqueeze(0)).all(-1).any(1) for v in vectors)
    assert ours.all() and not theirs.any()


@pytest.fixture(autouse=True)
def _no_process_group():
    yield
    assert not dist.is_initialized()
