"""The contractive penalty: the squared Frobenius norm of the encoder's Jacobian, exactly.

``||J(x)||_F^2 = sum_ij (dz_i / dx_j)^2`` per example, mean over the batch, where ``z`` is the code
(``outputs`` picks the encoder outputs that form it: all of them for a deterministic bottleneck,
the posterior mean for a Gaussian one). A common shortcut, the gradient of ``z.sum()`` with respect
to ``x``, is ``J^T 1``: its norm mixes the rows of ``J`` and can vanish while ``J`` does not. Both
paths below build the whole per-example Jacobian.

* :class:`~ae_lab.nets.MLPEncoder` takes a closed form: ``J = W_L D_{L-1} W_{L-1} ... D_1 W_1``
  with ``D_k = diag(act'(a_k))``, the derivative coming from the activation itself
  (:mod:`ae_lab.nets.activations`). It multiplies from the code side (``latent`` rows, the short
  side of the chain) and finishes with the Gram matrix ``W_1 W_1^T``, shared by the whole batch,
  so no ``latent x pixels`` matrix is formed per example.
* Any other encoder goes through ``torch.func`` (``vmap`` over ``jacrev``). A per-example Jacobian
  is only defined when examples do not interact, so batch norm uses its running statistics there
  (as in eval mode); the encoder's own mode is left as it was.

Both are differentiable, so the penalty trains the encoder's weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from ae_lab.nets.mlp import MLPEncoder


def _mlp_jacobian_frobenius_sq(
    encoder: MLPEncoder, x: torch.Tensor, outputs: slice = slice(None)
) -> torch.Tensor:
    mlp = encoder.mlp
    h = x.flatten(1)
    slopes = []  # d act / d pre-activation after every layer but the last, each (B, width)
    for layer in mlp.linears[:-1]:
        pre = layer(h)
        slopes.append(mlp.activation.derivative(pre))
        h = mlp.activation(pre)
    last = mlp.linears[-1].weight[outputs]  # (latent, width): the code's rows only
    first = mlp.linears[0].weight  # (h1, pixels)
    if not slopes:  # a single linear layer: J = W for every example
        return last.square().sum().expand(x.shape[0]).mean()
    # rows: (B, latent, width) = W_L D_{L-1} ... W_2 D_1, built right to left from the code side.
    rows = last.unsqueeze(0) * slopes[-1].unsqueeze(1)
    for layer, slope in zip(reversed(mlp.linears[1:-1]), reversed(slopes[:-1]), strict=True):
        rows = (rows @ layer.weight) * slope.unsqueeze(1)
    # ||rows W_1||_F^2 = sum((rows G) * rows) with G = W_1 W_1^T, when that is the cheaper side.
    if first.shape[0] < first.shape[1]:
        gram = first @ first.T
        per_example = ((rows @ gram) * rows).sum(dim=(1, 2))
    else:
        per_example = (rows @ first).square().sum(dim=(1, 2))
    return per_example.mean()


@contextlib.contextmanager
def _frozen_batch_norm(module: nn.Module) -> Iterator[None]:
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    modes = [m.training for m in norms]
    for m in norms:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(norms, modes, strict=True):
            m.train(mode)


def _generic_jacobian_frobenius_sq(
    encoder: nn.Module, x: torch.Tensor, outputs: slice = slice(None)
) -> torch.Tensor:
    params = dict(encoder.named_parameters())
    buffers = dict(encoder.named_buffers())

    def single(example: torch.Tensor) -> torch.Tensor:
        out = functional_call(encoder, (params, buffers), (example.unsqueeze(0),))
        return out.squeeze(0)[outputs]

    with _frozen_batch_norm(encoder):
        jac = vmap(jacrev(single))(x)  # (B, latent, *input_shape)
    return jac.flatten(1).square().sum(dim=1).mean()


def jacobian_frobenius_sq(
    encoder: nn.Module, x: torch.Tensor, outputs: slice = slice(None)
) -> torch.Tensor:
    """Mean over the batch of ``||d encoder(x)[outputs] / dx||_F^2``."""
    if isinstance(encoder, MLPEncoder) and encoder.mlp.is_plain:  # (no batch norm, no code act.)
        return _mlp_jacobian_frobenius_sq(encoder, x, outputs)
    return _generic_jacobian_frobenius_sq(encoder, x, outputs)
