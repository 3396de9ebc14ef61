"""The contractive penalty: the squared Frobenius norm of the encoder's Jacobian, exactly.

``||J(x)||_F^2 = sum_ij (dz_i / dx_j)^2`` per example, mean over the batch. A common shortcut, the
gradient of ``z.sum()`` with respect to ``x``, is ``J^T 1``: its norm mixes the rows of ``J`` and can
vanish while ``J`` does not. Both paths below build the whole per-example Jacobian.

* :class:`~ae_lab.nets.MLPEncoder` with an elementwise activation takes a closed form:
  ``J = W_L D_{L-1} W_{L-1} ... D_1 W_1`` with ``D_k = diag(act'(a_k))``. It multiplies from the
  code side (``latent`` rows, the short side of the chain) and finishes with the Gram matrix
  ``W_1 W_1^T``, shared by the whole batch, so no ``latent x pixels`` matrix is formed per example.
* Any other encoder goes through ``torch.func`` (``vmap`` over ``jacrev``).

Both are differentiable, so the penalty trains the encoder's weights.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from ae_lab.nets.mlp import MLPEncoder


def _activation_derivative(name: str, pre: torch.Tensor) -> torch.Tensor:
    if name == "relu":
        return (pre > 0).to(pre.dtype)
    if name == "sigmoid":
        s = torch.sigmoid(pre)
        return s * (1 - s)
    if name == "tanh":
        return 1 - torch.tanh(pre).square()
    if name == "identity":
        return torch.ones_like(pre)
    raise ValueError(f"no closed-form derivative for activation {name!r}")


def _mlp_jacobian_frobenius_sq(encoder: MLPEncoder, x: torch.Tensor) -> torch.Tensor:
    mlp = encoder.mlp
    h = x.flatten(1)
    slopes = []  # d act / d pre-activation after every layer but the last, each (B, width)
    for layer in mlp.linears[:-1]:
        pre = layer(h)
        slopes.append(_activation_derivative(mlp.activation_name, pre))
        h = mlp.activation(pre)
    first = mlp.linears[0].weight  # (h1, pixels)
    if not slopes:  # a single linear layer: J = W for every example
        return first.square().sum().expand(x.shape[0]).mean()
    # rows: (B, latent, width) = W_L D_{L-1} ... W_2 D_1, built right to left from the code side.
    rows = mlp.linears[-1].weight.unsqueeze(0) * slopes[-1].unsqueeze(1)
    for layer, slope in zip(reversed(mlp.linears[1:-1]), reversed(slopes[:-1]), strict=True):
        rows = (rows @ layer.weight) * slope.unsqueeze(1)
    # ||rows W_1||_F^2 = sum((rows G) * rows) with G = W_1 W_1^T, when that is the cheaper side.
    if first.shape[0] < first.shape[1]:
        gram = first @ first.T
        per_example = ((rows @ gram) * rows).sum(dim=(1, 2))
    else:
        per_example = (rows @ first).square().sum(dim=(1, 2))
    return per_example.mean()


def _generic_jacobian_frobenius_sq(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    params = dict(encoder.named_parameters())
    buffers = dict(encoder.named_buffers())

    def single(example: torch.Tensor) -> torch.Tensor:
        out = functional_call(encoder, (params, buffers), (example.unsqueeze(0),))
        return out.squeeze(0)

    jac = vmap(jacrev(single))(x)  # (B, latent, *input_shape)
    return jac.flatten(1).square().sum(dim=1).mean()


def jacobian_frobenius_sq(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``||d encoder(x) / dx||_F^2``."""
    if isinstance(encoder, MLPEncoder):
        return _mlp_jacobian_frobenius_sq(encoder, x)
    return _generic_jacobian_frobenius_sq(encoder, x)
