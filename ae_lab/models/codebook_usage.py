"""How much of a codebook a quantised model uses: the perplexity of its code assignments and the
share of its codes chosen at least once, over an epoch.

The perplexity is ``exp(H)``, ``H = -sum_k p_k log p_k`` the entropy of how often each code was
chosen: ``K`` when all ``K`` codes are chosen equally often, 1 when one code takes everything.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric


def perplexity(counts: torch.Tensor) -> torch.Tensor:
    """``exp`` of the entropy of the distribution ``counts / counts.sum()`` (``0 log 0 = 0``)."""
    p = counts / counts.sum().clamp(min=1)
    return torch.exp(-torch.special.xlogy(p, p).sum())


def usage(counts: torch.Tensor) -> torch.Tensor:
    """The share of codes chosen at least once."""
    return (counts > 0).float().mean()


class CodebookUsage(Metric):
    """``update`` takes code indices (any shape); ``compute`` gives ``vq_perplexity`` and
    ``codebook_usage`` of all the indices seen, counted across processes."""

    full_state_update = False

    def __init__(self, codebook_size: int) -> None:
        super().__init__()
        self.codebook_size = int(codebook_size)
        zeros = torch.zeros(self.codebook_size, dtype=torch.float64)
        self.add_state("counts", default=zeros, dist_reduce_fx="sum")

    def update(self, indices: torch.Tensor) -> None:
        self.counts += torch.bincount(indices.detach().flatten(), minlength=self.codebook_size)

    def compute(self) -> dict[str, torch.Tensor]:
        return {
            "vq_perplexity": perplexity(self.counts).float(),
            "codebook_usage": usage(self.counts),
        }


def codebook_metrics(codebook_size: int) -> dict[str, CodebookUsage]:
    """One :class:`CodebookUsage` per stage: ``train_codebook``, ``val_codebook``,
    ``test_codebook``."""
    return {f"{stage}_codebook": CodebookUsage(codebook_size) for stage in ("train", "val", "test")}
