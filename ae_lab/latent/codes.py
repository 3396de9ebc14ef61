"""The codes of a split: every image (or a seeded sample of a large split) encoded by the model in
eval mode, a chunk at a time, with its label. The figures, the probes and the fitted densities
all read codes through :func:`split_codes`, so they agree on which images they saw."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: most images encoded for one split (a seeded sample beyond it): 60,000 codes of a few hundred
#: units are small, and encoding them takes seconds on a CPU
MAX_IMAGES = 60_000
#: most pixel values held at once as float images (512 MB): a split of large images is sampled
MAX_FLOATS = 1 << 27
#: images encoded at once
CHUNK = 1024


@dataclass(frozen=True)
class Codes:
    """``codes`` ``(N, latent)`` float32 and ``labels`` ``(N,)`` int64, on the CPU."""

    codes: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.codes)


def encode_images(model, images: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """``model.encode`` over ``images`` (CPU, float) a chunk at a time, on the model's device, in
    eval mode without autograd; the codes come back on the CPU as float32. The model's mode is
    restored after."""
    was_training = model.training
    model.eval()
    try:
        parts = []
        device, dtype = _device_and_dtype(model)
        with torch.no_grad():
            for part in images.split(chunk):
                code = model.encode(part.to(device=device, dtype=dtype))
                parts.append(code.float().cpu())
        if not parts:
            return torch.zeros(0, model.latent_dim)
        return torch.cat(parts)
    finally:
        model.train(was_training)


def sample_images(
    data, split: str, limit: int | None = MAX_IMAGES, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The float images (CPU) and int64 labels of ``split``: every image, or ``limit`` of them
    chosen by ``seed`` (``data.sample_batch``'s seeded order, so the same arguments give the same
    images), and never more than :data:`MAX_FLOATS` pixel values' worth of images."""
    total = data.split_size(split)
    n = total if limit is None else min(total, int(limit))
    n = max(1, min(n, MAX_FLOATS // math.prod(data.image_shape)))
    images, labels = data.sample_batch(n, split=split, seed=seed)
    return images, torch.as_tensor(labels).long().cpu()


def split_codes(model, data, split: str, limit: int | None = MAX_IMAGES, seed: int = 0) -> Codes:
    """The codes and labels of :func:`sample_images` ``(data, split, limit, seed)``."""
    images, labels = sample_images(data, split, limit, seed)
    return Codes(encode_images(model, images), labels)


def _device_and_dtype(model) -> tuple[torch.device, torch.dtype]:
    for parameter in model.parameters():
        return parameter.device, parameter.dtype
    return torch.device("cpu"), torch.float32
