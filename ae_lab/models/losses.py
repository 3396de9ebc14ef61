"""Loss terms as small pure functions.

Reduction, everywhere: **sum over the pixels (or latent units) of one example, mean over the
batch**. A term is then the per-image negative log-likelihood, KL or penalty, so the weights in the
configs do not change meaning with the image size or the batch size.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LIKELIHOODS = ("gaussian", "bernoulli")


def _per_example_sum(values: torch.Tensor) -> torch.Tensor:
    return values.flatten(1).sum(dim=1).mean()


def reconstruction_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    likelihood: str = "gaussian",
    activation: Callable[[torch.Tensor], torch.Tensor] = torch.sigmoid,
) -> torch.Tensor:
    """Negative log-likelihood of ``target`` under the decoder's output, up to a constant.

    ``gaussian``: summed squared error between ``activation(logits)`` and the target (a unit
    variance Gaussian, dropping its constant). ``bernoulli``: binary cross-entropy computed from the
    logits (numerically stable; ``activation`` must then be the sigmoid).
    """
    if likelihood == "gaussian":
        return _per_example_sum((activation(logits) - target).square())
    if likelihood == "bernoulli":
        return _per_example_sum(
            F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        )
    raise ValueError(f"unknown likelihood {likelihood!r}; choose one of {LIKELIHOODS}")


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, diag(exp(logvar))) || N(0, I) ), summed over latent units, mean over the batch."""
    return _per_example_sum(0.5 * (mu.square() + logvar.exp() - 1.0 - logvar))


def l1_penalty(z: torch.Tensor) -> torch.Tensor:
    """Sparsity penalty ``||z||_1``, summed over latent units, mean over the batch."""
    return _per_example_sum(z.abs())
