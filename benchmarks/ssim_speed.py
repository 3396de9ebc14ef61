"""SSIM of one batch: torchmetrics' (a grouped 2-D convolution) against the lab's
(:mod:`ae_lab.models.ssim`, the same numbers from two matrix products), at the bake-off's size
and the faces' size. Prints milliseconds per batch and the largest difference.

    .venv/bin/python benchmarks/ssim_speed.py
"""

from __future__ import annotations

import time

import torch
from torchmetrics.functional.image import structural_similarity_index_measure as torchmetrics_ssim

from ae_lab.models.ssim import ssim_per_image

SHAPES = {"bake-off, 256 x 1x32x32": (256, 1, 32, 32), "faces, 64 x 3x64x64": (64, 3, 64, 64)}


def per_call_ms(function, preds, target, repeats: int = 20) -> float:
    function(preds, target)
    start = time.perf_counter()
    for _ in range(repeats):
        function(preds, target)
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    torch.manual_seed(0)
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"{'batch':<26} {'torchmetrics ms':>16} {'ae_lab ms':>10} {'max |diff|':>11}")
    for name, shape in SHAPES.items():
        preds = torch.rand(shape)
        target = (preds + 0.2 * torch.randn(shape)).clamp(0, 1)
        theirs = per_call_ms(lambda p, t: torchmetrics_ssim(p, t, data_range=1.0), preds, target)
        ours = per_call_ms(lambda p, t: ssim_per_image(p, t).mean(), preds, target)
        reference = torchmetrics_ssim(preds, target, data_range=1.0, reduction="none")
        difference = (reference - ssim_per_image(preds, target)).abs().max().item()
        print(f"{name:<26} {theirs:>16.1f} {ours:>10.1f} {difference:>11.1e}")


if __name__ == "__main__":
    main()
