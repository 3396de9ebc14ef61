"""Dense encoders and decoders over flattened images."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ae_lab.nets.activations import get_activation


class MLP(nn.Module):
    """``Linear -> act -> ... -> Linear``: the activation follows every layer but the last."""

    def __init__(
        self,
        in_features: int,
        hidden_dims: Sequence[int],
        out_features: int,
        activation: str = "relu",
        bias: bool = True,
    ) -> None:
        super().__init__()
        widths = [int(w) for w in (in_features, *hidden_dims, out_features)]
        if min(widths) < 1:
            raise ValueError(f"every layer needs a positive width, got {widths}")
        self.linears = nn.ModuleList(
            nn.Linear(a, b, bias=bias) for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
        self.activation = get_activation(activation)  # with its derivative (contractive penalty)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *hidden, last = self.linears
        for layer in hidden:
            x = self.activation(layer(x))
        return last(x)

    @property
    def is_linear(self) -> bool:
        """True when the whole map is one matrix: no activation between layers and no bias."""
        no_bias = all(layer.bias is None for layer in self.linears)
        return no_bias and (len(self.linears) == 1 or self.activation.name == "identity")

    def as_matrix(self) -> torch.Tensor:
        """The matrix ``W_L ... W_1`` of a linear MLP (``out x in``)."""
        if not self.is_linear:
            raise ValueError("as_matrix() needs an MLP with no bias and no activation")
        matrix = self.linears[0].weight
        for layer in self.linears[1:]:
            matrix = layer.weight @ matrix
        return matrix


class MLPEncoder(nn.Module):
    """Flattens an image batch ``(B, *shape)`` and maps it to codes ``(B, out_features)``."""

    def __init__(self, input_shape: Sequence[int], mlp: MLP) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x.flatten(1))

    def first_layer_weights(self) -> torch.Tensor:
        """Each first-layer unit's incoming weights shaped like the input: ``(units, *shape)``."""
        return self.mlp.linears[0].weight.view(-1, *self.input_shape)


class MLPDecoder(nn.Module):
    """Maps codes ``(B, latent)`` to images ``(B, *shape)`` (logits: no output activation)."""

    def __init__(self, output_shape: Sequence[int], mlp: MLP) -> None:
        super().__init__()
        self.output_shape = tuple(output_shape)
        self.mlp = mlp

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.mlp(z).view(-1, *self.output_shape)


def is_linear_map(encoder: nn.Module, decoder: nn.Module) -> bool:
    """Whether a dense encoder and decoder are each one matrix (no bias, no activation)."""
    dense = isinstance(encoder, MLPEncoder) and isinstance(decoder, MLPDecoder)
    return dense and encoder.mlp.is_linear and decoder.mlp.is_linear


def mlp_autoencoder(
    input_shape: Sequence[int],
    latent_dim: int,
    code_dim: int,
    hidden_dims: Sequence[int] = (512, 256),
    activation: str = "relu",
    bias: bool = True,
) -> tuple[MLPEncoder, MLPDecoder]:
    """An encoder ``input -> hidden_dims -> code_dim`` and the mirrored decoder ``latent -> input``.

    ``code_dim`` is what the encoder emits (``latent_dim`` for an AE, ``2 * latent_dim`` for a
    Gaussian posterior's mean and log-variance).
    """
    features = math.prod(input_shape)
    hidden = list(hidden_dims)
    encoder = MLPEncoder(input_shape, MLP(features, hidden, code_dim, activation, bias))
    decoder = MLPDecoder(input_shape, MLP(latent_dim, hidden[::-1], features, activation, bias))
    return encoder, decoder
