"""The numbers a VAE paper reports, beside the loss terms.

* :func:`importance_sampled_log_likelihood`: ``log p(x)`` by importance sampling from the posterior
  (Burda et al., 2016, the IWAE bound): ``log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x)``, ``z_k ~ q``.
  It is a lower bound of ``log p(x)`` that tightens as ``K`` grows and, for the same samples, is
  never below their ELBO estimate (Jensen), which it returns too.
* :class:`ActiveUnits`: Burda's criterion, a unit ``u`` is active when
  ``Cov_x(E_q[z_u | x]) > threshold`` (0.01), over all the images seen.
"""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric

from ae_lab.models.bottleneck import Gaussian
from ae_lab.models.losses import likelihood_constant, reconstruction_error_per_example

#: Burda et al.'s threshold on ``Var_x(E_q[z_u | x])`` for an active unit.
ACTIVITY_THRESHOLD = 0.01
#: Values of decoded pixels held at once while importance sampling (about 64 MB of float32).
SAMPLE_BUDGET = 1 << 24


def importance_sampled_log_likelihood(
    model, x: torch.Tensor, samples: int, budget: int = SAMPLE_BUDGET
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p(x) estimate, ELBO estimate)`` per image, each ``(B,)``, in nats, from ``samples``
    draws of ``q(z|x)`` per image, decoded a chunk at a time (``budget`` pixel values at once).

    ``model`` is an :class:`~ae_lab.models.Autoencoder` with a Gaussian bottleneck.
    """
    bottleneck: Gaussian = model.bottleneck
    mu, logvar = bottleneck.posterior(model.encoder(x))
    std = (0.5 * logvar).exp()
    pixels = x[0].numel()
    constant = likelihood_constant(model.likelihood, pixels)
    # All the noise at once (samples x B x latent is small), so chunking never changes the result.
    z_all = mu + std * torch.randn(samples, *mu.shape, device=mu.device, dtype=mu.dtype)
    per_chunk = max(1, budget // max(1, x.shape[0] * pixels))
    log_weights = []
    for z in z_all.split(per_chunk):  # (k, B, latent)
        k = len(z)
        logits = model.decoder(z.flatten(0, 1))
        target = x.expand(k, *x.shape).flatten(0, 1)
        error = reconstruction_error_per_example(
            logits, target, model.likelihood, model.output_activation
        ).view(k, -1)
        log_px_z = -(error + constant)
        log_weights.append(
            log_px_z + bottleneck.log_prior(z) - bottleneck.log_posterior(z, mu, logvar)
        )
    log_w = torch.cat(log_weights)  # (samples, B)
    return torch.logsumexp(log_w, dim=0) - math.log(samples), log_w.mean(dim=0)


class ActiveUnits(Metric):
    """How many latent units are active: ``Var_x(E_q[z_u | x]) > threshold`` (Burda et al.).

    ``update`` takes posterior means ``(B, latent)``; sums are reduced across processes.
    """

    full_state_update = False

    def __init__(self, latent_dim: int, threshold: float = ACTIVITY_THRESHOLD) -> None:
        super().__init__()
        self.threshold = float(threshold)
        zeros = torch.zeros(latent_dim, dtype=torch.float64)
        self.add_state("total", default=zeros.clone(), dist_reduce_fx="sum")
        self.add_state("total_sq", default=zeros.clone(), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, means: torch.Tensor) -> None:
        means = means.detach().double()
        self.total += means.sum(dim=0)
        self.total_sq += means.square().sum(dim=0)
        self.count += means.shape[0]

    def variances(self) -> torch.Tensor:
        """Per-unit variance of the posterior mean over the images seen (unbiased)."""
        n = self.count.clamp(min=2)
        mean = self.total / n
        return ((self.total_sq - n * mean.square()) / (n - 1)).clamp(min=0)

    def compute(self) -> torch.Tensor:
        return (self.variances() > self.threshold).sum().float()


def evaluation_metrics(latent_dim: int, prior: bool) -> torch.nn.ModuleDict:
    """The model's epoch metrics: PSNR and SSIM of the deterministic reconstruction against the
    input for validation and test (``val_psnr``...), and for a model with a prior the active
    units of the test set (``test_active_units``)."""
    from torchmetrics.image import PeakSignalNoiseRatio

    from ae_lab.models.ssim import SSIM

    metrics: dict[str, torch.nn.Module] = {}
    for stage in ("val", "test"):
        metrics[f"{stage}_psnr"] = PeakSignalNoiseRatio(data_range=1.0)
        metrics[f"{stage}_ssim"] = SSIM(data_range=1.0)
    if prior:
        metrics["test_active_units"] = ActiveUnits(latent_dim)
    return torch.nn.ModuleDict(metrics)
