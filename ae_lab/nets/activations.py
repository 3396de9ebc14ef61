"""Elementwise activations, each with its derivative beside it.

The derivative is what the closed-form contractive penalty needs (``J = W_L D_{L-1} ... D_1 W_1``
with ``D_k = diag(act'(a_k))``, see :mod:`ae_lab.models.jacobian`); keeping it next to the function
means a new activation cannot be added without one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Fn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Activation:
    """``function(pre)`` and ``derivative(pre) = d function / d pre``, both elementwise."""

    name: str
    function: Fn
    derivative: Fn

    def __call__(self, pre: torch.Tensor) -> torch.Tensor:
        return self.function(pre)


def _sigmoid_slope(pre: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(pre)
    return s * (1 - s)


def _gelu_slope(pre: torch.Tensor) -> torch.Tensor:
    # d/dx [x * Phi(x)] = Phi(x) + x * phi(x), with the exact (erf) GELU
    cdf = 0.5 * (1 + torch.erf(pre / math.sqrt(2)))
    pdf = torch.exp(-0.5 * pre.square()) / math.sqrt(2 * math.pi)
    return cdf + pre * pdf


def _elu_slope(pre: torch.Tensor) -> torch.Tensor:
    return torch.where(pre > 0, torch.ones_like(pre), torch.exp(pre))


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("relu", F.relu, lambda pre: (pre > 0).to(pre.dtype)),
        Activation(
            "leaky_relu",
            F.leaky_relu,  # negative slope 0.01
            lambda pre: torch.where(pre > 0, 1.0, 0.01).to(pre.dtype),
        ),
        Activation("elu", F.elu, _elu_slope),
        Activation("gelu", F.gelu, _gelu_slope),
        Activation("softplus", F.softplus, torch.sigmoid),
        Activation("sigmoid", torch.sigmoid, _sigmoid_slope),
        Activation("tanh", torch.tanh, lambda pre: 1 - torch.tanh(pre).square()),
        Activation("identity", lambda pre: pre, torch.ones_like),
    )
}


def get_activation(name: str) -> Activation:
    """The activation called ``name``; a ValueError listing the choices otherwise."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}"
        ) from None
