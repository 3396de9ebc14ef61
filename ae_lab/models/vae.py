"""Variational autoencoder with a diagonal Gaussian posterior and a standard normal prior."""

from __future__ import annotations

import torch

from ae_lab.models.base import AutoencoderBase
from ae_lab.models.losses import kl_divergence, reconstruction_loss


class VAE(AutoencoderBase):
    """``loss = recon + beta_t * KL``, with ``beta_t`` warmed up linearly over ``warmup_steps``.

    ``recon`` is summed over the pixels (see :mod:`ae_lab.models.losses`), so ``beta = 1`` is the
    ELBO (up to the Gaussian's constant). Code that averages the error over pixels instead
    (``mse_loss(x_hat, x) + kld_weight * KL``) corresponds to ``beta = kld_weight * C * H * W``.

    The encoder emits the posterior's mean and log-variance; ``encode`` returns the mean.
    Logged terms: ``recon`` (negative log-likelihood, up to a constant for the Gaussian), ``kl``,
    ``elbo = -(recon + kl)`` (never weighted by beta) and the ``beta`` in use.
    """

    codes_per_latent = 2
    LOGVAR_RANGE = (-30.0, 20.0)  # keeps exp(logvar) finite early in training

    def __init__(self, *args, beta: float = 1.0, warmup_steps: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.beta = float(beta)
        self.warmup_steps = int(warmup_steps)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of ``q(z | x)``, each ``(B, latent_dim)``."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(*self.LOGVAR_RANGE)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images decoded from codes drawn from the prior ``N(0, I)``."""
        z = torch.randn(n, self.latent_dim, generator=generator)  # on the CPU: seedable anywhere
        return self.decode(z.to(self.device))

    def current_beta(self) -> float:
        if self.warmup_steps <= 0:
            return self.beta
        return self.beta * min(1.0, self.global_step / self.warmup_steps)

    def objective(self, x: torch.Tensor) -> dict[str, torch.Tensor | float]:
        mu, logvar = self.posterior(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        recon = reconstruction_loss(self.decoder(z), x, self.likelihood, self.output_activation)
        kl = kl_divergence(mu, logvar)
        beta = self.current_beta()
        return {
            "loss": recon + beta * kl,
            "recon": recon,
            "kl": kl,
            "elbo": -(recon + kl),
            "beta": beta,
        }
