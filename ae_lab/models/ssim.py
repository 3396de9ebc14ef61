"""SSIM as torchmetrics computes it (Gaussian window, sigma 1.5, 11 taps, reflected borders,
K1 = 0.01, K2 = 0.03, the mean of the SSIM map per image, averaged over images), with the window
applied as two small matrix products instead of a 2-D convolution.

The Gaussian window is separable and the reflected padding is linear, so filtering an image
``X`` (H x W) is ``A_h @ X @ A_w.T`` with ``A`` an (n x n) matrix holding both. torchmetrics'
grouped ``conv2d`` takes the CPU's slow depthwise path; validation spent most of its time there
(benchmarks/README.md, "SSIM"). ``tests/models/test_ssim.py`` checks equality with
``torchmetrics.functional.image.structural_similarity_index_measure``.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

SIGMA = 1.5
K1, K2 = 0.01, 0.03


def gaussian_window(sigma: float = SIGMA, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The normalised 1-D Gaussian of torchmetrics' SSIM: ``int(3.5 sigma + 0.5) * 2 + 1`` taps."""
    size = int(3.5 * sigma + 0.5) * 2 + 1
    offsets = torch.arange((1 - size) / 2, (1 + size) / 2, 1, dtype=dtype)
    window = torch.exp(-((offsets / sigma) ** 2) / 2)
    return window / window.sum()


def filter_matrix(n: int, window: torch.Tensor) -> torch.Tensor:
    """``(n, n)``: row ``i`` is the window centred on pixel ``i`` of a reflect-padded signal,
    folded back onto the ``n`` pixels (``F.pad(mode="reflect")``: the edge pixel not repeated)."""
    size = window.numel()
    pad = (size - 1) // 2
    if pad >= n:
        raise ValueError(f"SSIM's {size}-pixel window needs images of at least {pad + 1} pixels")
    index = (torch.arange(n)[:, None] + torch.arange(size) - pad).abs()
    index = torch.where(index > n - 1, 2 * (n - 1) - index, index)
    rows = torch.arange(n).repeat_interleave(size)
    matrix = torch.zeros(n, n, dtype=window.dtype)
    return matrix.index_put_((rows, index.flatten()), window.repeat(n), accumulate=True)


def ssim_per_image(
    preds: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, sigma: float = SIGMA
) -> torch.Tensor:
    """``(B,)``: the SSIM of each image of ``preds`` against ``target`` (``(B, C, H, W)``), its
    map averaged over channels and pixels."""
    window = gaussian_window(sigma, torch.float32)
    rows = filter_matrix(preds.shape[-2], window).to(preds)
    cols = filter_matrix(preds.shape[-1], window).to(preds)
    stacked = torch.cat((preds, target, preds * preds, target * target, preds * target))
    mu_p, mu_t, pp, tt, pt = (rows @ stacked @ cols.T).split(preds.shape[0])
    mu_pp, mu_tt, mu_pt = mu_p * mu_p, mu_t * mu_t, mu_p * mu_t
    var_p = (pp - mu_pp).clamp(min=0)
    var_t = (tt - mu_tt).clamp(min=0)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    ssim = ((2 * mu_pt + c1) * (2 * (pt - mu_pt) + c2)) / (
        (mu_pp + mu_tt + c1) * (var_p + var_t + c2)
    )
    return ssim.flatten(1).mean(dim=1)


class SSIM(Metric):
    """The mean SSIM over all images seen; sums are reduced across processes."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, data_range: float = 1.0) -> None:
        super().__init__()
        self.data_range = float(data_range)
        self.add_state("total", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        values = ssim_per_image(preds.detach().float(), target.detach().float(), self.data_range)
        self.total += values.double().sum()
        self.count += values.numel()

    def compute(self) -> torch.Tensor:
        return (self.total / self.count).float()
