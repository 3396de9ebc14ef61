"""Deterministic autoencoders. Each variant changes one thing of :class:`Autoencoder`'s objective:
the input it sees (``corrupt``) or the penalty added to the reconstruction (``penalty``)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ae_lab.models.base import AutoencoderBase, Spec, build
from ae_lab.models.jacobian import jacobian_frobenius_sq
from ae_lab.models.losses import l1_penalty, reconstruction_loss


class Autoencoder(AutoencoderBase):
    """``loss = recon(decode(encode(corrupt(x))), x) + penalty_weight * penalty``."""

    def __init__(self, *args, penalty_weight: float = 0.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.penalty_weight = float(penalty_weight)

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        """The input the encoder sees during the objective; the clean ``x`` by default."""
        return x

    def penalty(self, x_in: torch.Tensor, z: torch.Tensor) -> torch.Tensor | None:
        """A regulariser on the code (or the encoder at ``x_in``); none by default."""
        return None

    def diagnostics(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Quantities logged beside the loss terms (not optimised); none by default."""
        return {}

    def objective(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x_in = self.corrupt(x)
        z = self.encoder(x_in)
        recon = reconstruction_loss(self.decoder(z), x, self.likelihood, self.output_activation)
        terms = {"loss": recon, "recon": recon}
        penalty = self.penalty(x_in, z)
        if penalty is not None:
            terms["penalty"] = penalty
            terms["loss"] = recon + self.penalty_weight * penalty
        return {**terms, **self.diagnostics(z)}


class LinearAutoencoder(Autoencoder):
    """No bias, no activation: the whole model is the matrix ``W_dec W_enc``.

    With a code as wide as the input, the optimum is the identity on the data's span.
    """

    def __init__(self, *args, output_activation: str = "identity", **kwargs) -> None:
        super().__init__(*args, output_activation=output_activation, **kwargs)
        for net in (self.encoder, self.decoder):
            if not net.mlp.is_linear:
                raise ValueError("linear_ae needs an MLP net with bias=false and no activation")

    def weight_product(self) -> torch.Tensor:
        """``W_dec @ W_enc``, a ``(pixels, pixels)`` matrix: the map from input to reconstruction."""
        return self.decoder.mlp.as_matrix() @ self.encoder.mlp.as_matrix()


class SparseAutoencoder(Autoencoder):
    """Adds ``penalty_weight * ||z||_1``: most code units are pushed to (nearly) zero.

    Also logs ``active``: the fraction of code entries with ``|z| > active_threshold``.
    """

    def __init__(self, *args, active_threshold: float = 0.01, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.active_threshold = float(active_threshold)

    def penalty(self, x_in: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return l1_penalty(z)

    def diagnostics(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"active": (z.detach().abs() > self.active_threshold).float().mean()}


class ContractiveAutoencoder(Autoencoder):
    """Adds ``penalty_weight * ||dz/dx||_F^2``: the code is made insensitive to small changes of x."""

    def penalty(self, x_in: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return jacobian_frobenius_sq(self.encoder, x_in)


class DenoisingAutoencoder(Autoencoder):
    """Reconstructs the clean ``x`` from ``corruption(x)``.

    The corruption is part of the objective (train, validation and test losses measure denoising);
    ``encode``/``decode``/``forward`` never corrupt.
    """

    def __init__(self, *args, corruption: Spec, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.corruption: Callable[[torch.Tensor], torch.Tensor] = build(corruption)

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        return self.corruption(x)
