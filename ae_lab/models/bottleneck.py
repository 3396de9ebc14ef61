"""What lies between the encoder and the decoder: a deterministic code, or a diagonal Gaussian
posterior ``q(z|x)`` with a standard normal prior (a VAE).

A bottleneck turns the encoder's output ``h`` into the code the figures show (``code``), the code
the decoder is trained on (``sample``) and, for a Gaussian, the KL term of the ELBO. These two hold
no parameters: the encoder emits ``code_dim(latent_dim)`` features and the bottleneck reads them.
The third, ``vq`` (:mod:`ae_lab.models.quantize`), holds a codebook: it is an ``nn.Module`` the
model registers, so the codebook is trained, checkpointed and moved with the model.
"""

from __future__ import annotations

import math

import torch

from ae_lab.models.quantize import VectorQuantizer

LOG_2PI = math.log(2 * math.pi)


class Deterministic:
    """``z = h``: a plain autoencoder's code."""

    name = "deterministic"
    has_prior = False

    def code_dim(self, latent_dim: int) -> int:
        return latent_dim

    def code(self, h: torch.Tensor) -> torch.Tensor:
        return h

    def sample(self, h: torch.Tensor) -> torch.Tensor:
        return h


class Gaussian:
    """``q(z|x) = N(mu(x), diag(exp(logvar(x))))``, prior ``p(z) = N(0, I)``.

    The encoder emits ``[mu, logvar]``; the code is ``mu``. ``beta`` weighs the KL term in the loss
    (``beta = 1``: the ELBO), reached linearly from 0 over ``warmup_steps`` optimizer steps.
    """

    name = "gaussian"
    has_prior = True
    LOGVAR_RANGE = (-30.0, 20.0)  # keeps exp(logvar) finite early in training

    def __init__(self, beta: float = 1.0, warmup_steps: int = 0) -> None:
        if not beta >= 0:
            raise ValueError(f"model.beta must be >= 0, got {beta}")
        if warmup_steps < 0:
            raise ValueError(f"model.warmup_steps must be >= 0, got {warmup_steps}")
        self.beta = float(beta)
        self.warmup_steps = int(warmup_steps)

    def code_dim(self, latent_dim: int) -> int:
        return 2 * latent_dim

    def posterior(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of ``q(z|x)``, each ``(B, latent)``."""
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar.clamp(*self.LOGVAR_RANGE)

    def code(self, h: torch.Tensor) -> torch.Tensor:
        return h[:, : h.shape[1] // 2]

    def sample(self, h: torch.Tensor) -> torch.Tensor:
        """A reparameterised draw ``mu + sigma * eps`` (differentiable in ``h``)."""
        mu, logvar = self.posterior(h)
        return mu + torch.randn_like(mu) * (0.5 * logvar).exp()

    def beta_at(self, step: int) -> float:
        if self.warmup_steps <= 0:
            return self.beta
        return self.beta * min(1.0, step / self.warmup_steps)

    @staticmethod
    def kl_per_unit(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """``KL(q(z_i|x) || N(0, 1))`` per example and latent unit, ``(B, latent)``."""
        return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar)

    def kl(self, h: torch.Tensor) -> torch.Tensor:
        """``KL(q(z|x) || p(z))`` per example, ``(B,)``."""
        return self.kl_per_unit(*self.posterior(h)).sum(dim=1)

    # ---- densities, for the importance-sampled likelihood --------------------------------------
    @staticmethod
    def log_prior(z: torch.Tensor) -> torch.Tensor:
        """``log N(z; 0, I)`` summed over the last dimension."""
        return -0.5 * (z.square() + LOG_2PI).sum(dim=-1)

    @staticmethod
    def log_posterior(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """``log N(z; mu, diag(exp(logvar)))`` summed over the last dimension."""
        return -0.5 * ((z - mu).square() * (-logvar).exp() + logvar + LOG_2PI).sum(dim=-1)

    def prior_sample(
        self, n: int, latent_dim: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``n`` codes from ``N(0, I)``, drawn on the CPU so a seeded generator works anywhere."""
        return torch.randn(n, latent_dim, generator=generator)


BOTTLENECKS = ("deterministic", "gaussian", "vq")
#: The model's settings that configure a ``vq`` bottleneck's codebook (``VectorQuantizer``'s).
CODEBOOK_SETTINGS = (
    "codebook_size", "codebook_dim", "commitment", "ema", "per_unit", "dead_code_steps",
    "codebook_init",
)  # fmt: skip


def make_bottleneck(
    kind: str,
    beta: float | None = None,
    warmup_steps: int = 0,
    latent_dim: int | None = None,
    **codebook: object,
) -> Deterministic | Gaussian | VectorQuantizer:
    """The bottleneck called ``kind``. ``beta``/``warmup_steps`` only apply to a Gaussian; the
    ``codebook`` settings (:class:`VectorQuantizer`'s arguments; ``None`` or false: unset) only to
    ``vq``, which also needs the ``latent_dim``."""
    if kind not in BOTTLENECKS:
        raise ValueError(f"model.bottleneck must be one of {', '.join(BOTTLENECKS)}, got {kind!r}")
    given = [name for name, value in codebook.items() if value is not None and value is not False]
    if kind != "vq" and given:
        raise ValueError(
            f"model.{given[0]} configures a codebook: it needs model.bottleneck=vq (model=vq_vae)"
        )
    if kind != "gaussian" and (beta is not None or warmup_steps):
        raise ValueError(
            "model.beta and model.warmup_steps weigh a KL term: they need "
            "model.bottleneck=gaussian (a VAE: model=vae or model=cnn_vae)"
        )
    if kind == "gaussian":
        return Gaussian(1.0 if beta is None else beta, warmup_steps)
    if kind == "vq":
        settings = {name: value for name, value in codebook.items() if value is not None}
        return VectorQuantizer(int(latent_dim), **settings)
    return Deterministic()
