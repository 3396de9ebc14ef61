"""Loss terms as small pure functions.

Reduction, everywhere: **sum over the pixels (or latent units) of one example, mean over the
batch**. A term is then the per-image negative log-likelihood, KL or penalty, so the weights in the
configs do not change meaning with the image size or the batch size. The ``*_per_example``
functions return ``(B,)`` before the batch mean.

The likelihoods, as densities in nats:

* ``gaussian``: the summed squared error ``||x - x_hat||^2`` is ``-log N(x; x_hat, I/2)`` minus its
  constant ``(D/2) log(pi)`` (a Gaussian of variance 1/2 per pixel: ``||x - mu||^2 / (2 sigma^2)``
  with ``sigma^2 = 1/2``). The loss drops the constant; :func:`likelihood_constant` gives it back,
  so ELBO and importance-sampled likelihoods are true log-densities.
* ``bernoulli``: binary cross-entropy from the logits, exact for binary pixels
  (``data.binarize=stochastic``, the literature's setting for MNIST).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

LIKELIHOODS = ("gaussian", "bernoulli")
Activation = Callable[[torch.Tensor], torch.Tensor]


def _sum_per_example(values: torch.Tensor) -> torch.Tensor:
    return values.flatten(1).sum(dim=1)


def reconstruction_error_per_example(
    logits: torch.Tensor,
    target: torch.Tensor,
    likelihood: str = "gaussian",
    activation: Activation = torch.sigmoid,
) -> torch.Tensor:
    """``-log p(target | logits)`` per example, ``(B,)``, without the Gaussian's constant.

    ``gaussian``: summed squared error between ``activation(logits)`` and the target.
    ``bernoulli``: binary cross-entropy computed from the logits (numerically stable;
    ``activation`` must then be the sigmoid). Computed in float32 whatever the precision the net
    ran in (``trainer.precision=bf16-mixed``): a sum over thousands of pixels needs it.
    """
    logits = logits.float()
    if likelihood == "gaussian":  # mse_loss: one kernel each way, where (a - b).square() has two
        return _sum_per_example(F.mse_loss(activation(logits), target, reduction="none"))
    if likelihood == "bernoulli":
        return _sum_per_example(
            F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        )
    raise ValueError(f"unknown likelihood {likelihood!r}; choose one of {LIKELIHOODS}")


def likelihood_constant(likelihood: str, pixels: int) -> float:
    """What :func:`reconstruction_error_per_example` leaves out of ``-log p(x|z)``, in nats."""
    if likelihood == "gaussian":
        return 0.5 * pixels * math.log(math.pi)  # N(x; x_hat, I/2)
    if likelihood == "bernoulli":
        return 0.0
    raise ValueError(f"unknown likelihood {likelihood!r}; choose one of {LIKELIHOODS}")


def reconstruction_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    likelihood: str = "gaussian",
    activation: Activation = torch.sigmoid,
) -> torch.Tensor:
    """:func:`reconstruction_error_per_example`, mean over the batch."""
    return reconstruction_error_per_example(logits, target, likelihood, activation).mean()


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, diag(exp(logvar))) || N(0, I) ), summed over latent units, mean over the batch."""
    return _sum_per_example(0.5 * (mu.square() + logvar.exp() - 1.0 - logvar)).mean()


def l1_penalty(z: torch.Tensor) -> torch.Tensor:
    """Sparsity penalty ``||z||_1``, summed over latent units, mean over the batch."""
    return _sum_per_example(z.abs()).mean()


def codebook_loss(h: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
    """VQ-VAE's codebook term ``||sg(h) - e||^2``: moves the chosen codebook vectors ``e`` towards
    the encoder's outputs ``h`` (the encoder gets no gradient). Summed over latent units, mean over
    the batch; ``h`` and ``quantized`` are ``(B, latent)``."""
    return _sum_per_example((quantized - h.detach()).square()).mean()


def commitment_loss(h: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
    """VQ-VAE's commitment term ``||h - sg(e)||^2``: keeps the encoder's outputs near the codes
    they chose (the codebook gets no gradient). Same value as :func:`codebook_loss`, same
    reduction."""
    return _sum_per_example((h - quantized.detach()).square()).mean()
