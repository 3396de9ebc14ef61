"""Dense encoders and decoders over flattened images."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ae_lab.nets.activations import get_activation


class MLP(nn.Module):
    """``Linear -> act -> ... -> Linear -> output_activation``: ``activation`` follows every layer
    but the last, ``output_activation`` (identity by default) the last.

    With ``batch_norm``, each hidden layer is ``Linear (no bias) -> BatchNorm1d -> act``, as in
    ae_bakeoff's dense nets: the norm's shift takes the bias's place. The last layer keeps ``bias``.
    """

    def __init__(
        self,
        in_features: int,
        hidden_dims: Sequence[int],
        out_features: int,
        activation: str = "relu",
        bias: bool = True,
        batch_norm: bool = False,
        output_activation: str = "identity",
    ) -> None:
        super().__init__()
        widths = [int(w) for w in (in_features, *hidden_dims, out_features)]
        if min(widths) < 1:
            raise ValueError(f"every layer needs a positive width, got {widths}")
        pairs = list(zip(widths[:-1], widths[1:], strict=True))
        hidden_bias = bias and not batch_norm
        self.linears = nn.ModuleList(
            [nn.Linear(a, b, bias=hidden_bias) for a, b in pairs[:-1]]
            + [nn.Linear(*pairs[-1], bias=bias)]
        )
        # empty without batch norm: the parameters (and checkpoints) of a plain MLP are unchanged
        self.norms = nn.ModuleList(nn.BatchNorm1d(b) for _, b in pairs[:-1] if batch_norm)
        self.activation = get_activation(activation)  # with its derivative (contractive penalty)
        self.output_activation = get_activation(output_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *hidden, last = self.linears
        for n, layer in enumerate(hidden):
            x = layer(x)
            x = self.activation(self.norms[n](x) if self.norms else x)
        return self.output_activation(last(x))

    @property
    def is_plain(self) -> bool:
        """True for the plain chain ``Linear -> act -> ... -> Linear``: no batch norm and no output
        activation (the form the closed-form contractive Jacobian assumes)."""
        return not self.norms and self.output_activation.name == "identity"

    @property
    def is_linear(self) -> bool:
        """True when the whole map is one matrix: no activation (hidden or output), no batch norm
        and no bias."""
        no_bias = all(layer.bias is None for layer in self.linears)
        one_map = len(self.linears) == 1 or self.activation.name == "identity"
        return no_bias and one_map and self.is_plain

    def as_matrix(self) -> torch.Tensor:
        """The matrix ``W_L ... W_1`` of a linear MLP (``out x in``)."""
        if not self.is_linear:
            raise ValueError(
                "as_matrix() needs an MLP with no bias and no activation, nor batch norm"
            )
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


def geometric_widths(features: int, code: int, depth: int) -> list[int]:
    """The hidden widths of ``depth`` linear layers from ``features`` down to ``code``, shrinking by
    one whole factor per layer, as ae_bakeoff's DenseEncoder computes them (floating point
    included): ``f = int((features // code) ** (1 / depth))``, widths ``features // f**i`` for
    ``i = 1 .. depth - 1``. ``1024 -> 20`` in 3 layers: ``[341, 113]``; ``1024 -> 40``: ``[512, 256]``.
    """
    if depth < 1:
        raise ValueError(f"model.net.depth must be >= 1, got {depth}")
    factor = max(1, int(math.pow(features // code, 1 / depth)))
    return [features // factor**i for i in range(1, depth)]


def mlp_autoencoder(
    input_shape: Sequence[int],
    latent_dim: int,
    code_dim: int,
    hidden_dims: Sequence[int] | None = (512, 256),
    activation: str = "relu",
    bias: bool = True,
    batch_norm: bool = False,
    code_activation: str = "identity",
    depth: int | None = None,
) -> tuple[MLPEncoder, MLPDecoder]:
    """An encoder ``input -> hidden_dims -> code_dim`` and the mirrored decoder ``latent -> input``.

    ``code_dim`` is what the encoder emits (``latent_dim`` for an AE, ``2 * latent_dim`` for a
    Gaussian posterior's mean and log-variance). ``hidden_dims=None`` with ``depth``: ``depth``
    linear layers each way with :func:`geometric_widths` (the encoder's from the input to
    ``code_dim``, the decoder's mirrored from ``latent_dim``, so a VAE's two differ, as in
    ae_bakeoff). ``code_activation`` follows the encoder's last layer (``relu``: ae_bakeoff's
    shallow encoder; ``sigmoid``: codes in (0, 1)); ``batch_norm``: see :class:`MLP`.
    """
    features = math.prod(input_shape)
    if (hidden_dims is None) == (depth is None):
        raise ValueError(
            "give model.net.hidden_dims (the widths) or model.net.depth with "
            "model.net.hidden_dims=null (widths shrinking geometrically), not both"
        )
    if hidden_dims is not None:
        encoder_hidden = list(hidden_dims)
        decoder_hidden = encoder_hidden[::-1]
    else:
        encoder_hidden = geometric_widths(features, code_dim, depth)
        decoder_hidden = geometric_widths(features, latent_dim, depth)[::-1]
    norm = {"activation": activation, "bias": bias, "batch_norm": batch_norm}
    encoder_mlp = MLP(features, encoder_hidden, code_dim, output_activation=code_activation, **norm)
    decoder_mlp = MLP(latent_dim, decoder_hidden, features, **norm)
    return MLPEncoder(input_shape, encoder_mlp), MLPDecoder(input_shape, decoder_mlp)
