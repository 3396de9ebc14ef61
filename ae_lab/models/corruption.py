"""Input corruptions for the denoising autoencoder: callables ``x -> x_noisy`` on ``[0, 1]`` images.

Masking noise zeroes each pixel with probability ``p`` and leaves the others exactly as they were.
``torch.nn.functional.dropout`` is not masking noise: it also multiplies the kept pixels by
``1 / (1 - p)``.
"""

from __future__ import annotations

import torch


def _check_probability(p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"corruption probability must lie in [0, 1], got {p}")
    return float(p)


class MaskingNoise:
    """Zero each pixel independently with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = _check_probability(p)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        keep = torch.rand_like(x) >= self.p
        return x * keep

    def __repr__(self) -> str:
        return f"MaskingNoise(p={self.p})"


class GaussianNoise:
    """Add ``N(0, std^2)`` to every pixel, then clip back to ``[0, 1]`` (unless ``clip`` is off)."""

    def __init__(self, std: float = 0.3, clip: bool = True) -> None:
        if std < 0:
            raise ValueError(f"noise std must be >= 0, got {std}")
        self.std = float(std)
        self.clip = clip

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        noisy = x + self.std * torch.randn_like(x)
        return noisy.clamp(0.0, 1.0) if self.clip else noisy

    def __repr__(self) -> str:
        return f"GaussianNoise(std={self.std}, clip={self.clip})"


class SaltAndPepper:
    """Set each pixel with probability ``p`` to 0 or 1 (a fair coin picks which)."""

    def __init__(self, p: float = 0.2) -> None:
        self.p = _check_probability(p)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        u = torch.rand_like(x)
        hit = u < self.p
        salt = (u < self.p / 2).to(x.dtype)  # half of the hit pixels become white
        return torch.where(hit, salt, x)

    def __repr__(self) -> str:
        return f"SaltAndPepper(p={self.p})"
