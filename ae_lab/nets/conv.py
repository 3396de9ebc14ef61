"""Convolutional encoders and decoders for images of any height and width.

Every encoder block is a stride-2 ``Conv2d(k=3, p=1)`` + batch norm + ReLU, which maps a side of
``n`` pixels to ``ceil(n / 2)``. The decoder mirrors it with stride-2 transposed convolutions whose
``output_padding`` is derived from the encoder's recorded sizes, so an odd side (218x178 CelebA,
a 7-pixel MNIST feature map) comes back to exactly its input size instead of being off by one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ae_lab.nets.mlp import MLP


def halved(size: int) -> int:
    """The side length after one stride-2, kernel-3, padding-1 convolution."""
    return (size + 1) // 2


def feature_sizes(height: int, width: int, blocks: int) -> list[tuple[int, int]]:
    """``[(H, W), (H1, W1), ..., (Hn, Wn)]``: the spatial size before and after every block."""
    sizes = [(height, width)]
    for _ in range(blocks):
        h, w = sizes[-1]
        sizes.append((halved(h), halved(w)))
    return sizes


def _he_init(conv: nn.Conv2d | nn.ConvTranspose2d, fan_in: float) -> nn.Module:
    """He initialisation for a conv followed by ReLU, ``std = sqrt(2 / fan_in)``.

    Activations then keep their scale through the blocks, so batch norm's initial running
    statistics (mean 0, variance 1) are about right and a short run already decodes varied images
    in eval mode instead of a flat grey. ``fan_in`` is counted per output pixel: a stride-2
    transposed conv reaches each output from only about ``(3 / 2)^2`` taps per input channel,
    which ``nn.init.kaiming_normal_`` does not know.
    """
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / fan_in))
    return conv


def _down(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        _he_init(nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1, bias=False), c_in * 9),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def _up(c_in: int, c_out: int, target: tuple[int, int], source: tuple[int, int]) -> nn.Sequential:
    # A transposed conv (k=3, s=2, p=1) maps n -> 2n - 1 + output_padding.
    padding = tuple(t - (2 * s - 1) for t, s in zip(target, source, strict=True))
    assert all(p in (0, 1) for p in padding), (target, source)
    return nn.Sequential(
        _he_init(
            nn.ConvTranspose2d(
                c_in, c_out, kernel_size=3, stride=2, padding=1, output_padding=padding, bias=False
            ),
            c_in * 9 / 4,
        ),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class ConvEncoder(nn.Module):
    """``(B, C, H, W)`` images to ``(B, out_features)`` codes."""

    def __init__(
        self,
        input_shape: Sequence[int],
        channels: Sequence[int],
        dense_dims: Sequence[int],
        out_features: int,
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        widths = [c, *channels]
        self.blocks = nn.Sequential(
            *(_down(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        )
        last_h, last_w = feature_sizes(h, w, len(channels))[-1]
        self.head = MLP(channels[-1] * last_h * last_w, list(dense_dims), out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x).flatten(1))


class ConvDecoder(nn.Module):
    """``(B, latent)`` codes to ``(B, C, H, W)`` logits, the mirror of :class:`ConvEncoder`."""

    def __init__(
        self,
        output_shape: Sequence[int],
        channels: Sequence[int],
        dense_dims: Sequence[int],
        latent_dim: int,
    ) -> None:
        super().__init__()
        c, h, w = output_shape
        sizes = feature_sizes(h, w, len(channels))
        self.seed_shape = (channels[-1], *sizes[-1])
        self.head = MLP(latent_dim, list(dense_dims)[::-1], math.prod(self.seed_shape))
        # Block i undoes encoder block i+1 (channels[i+1] -> channels[i], sizes[i+2] -> sizes[i+1]);
        # the last transposed block restores full resolution at channels[0].
        ups = [
            _up(channels[i + 1], channels[i], sizes[i + 1], sizes[i + 2])
            for i in reversed(range(len(channels) - 1))
        ]
        ups.append(_up(channels[0], channels[0], sizes[0], sizes[1]))
        self.blocks = nn.Sequential(*ups)
        self.to_image = nn.Conv2d(channels[0], c, kernel_size=3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.head(z).view(-1, *self.seed_shape)
        return self.to_image(self.blocks(x))


def conv_autoencoder(
    input_shape: Sequence[int],
    latent_dim: int,
    code_dim: int,
    channels: Sequence[int] = (32, 64, 128, 256, 512),
    dense_dims: Sequence[int] = (),
) -> tuple[ConvEncoder, ConvDecoder]:
    """A conv encoder emitting ``code_dim`` features and the mirrored decoder from ``latent_dim``."""
    if len(input_shape) != 3:
        raise ValueError(f"conv nets need (C, H, W) inputs, got shape {tuple(input_shape)}")
    channels = list(channels)
    if not channels:
        raise ValueError("conv nets need at least one channel width")
    encoder = ConvEncoder(input_shape, channels, dense_dims, code_dim)
    decoder = ConvDecoder(input_shape, channels, dense_dims, latent_dim)
    return encoder, decoder
