"""Penalties on the code, added to any model's loss as ``weight * value``.

A penalty is called with the encoder, the input the encoder saw and the code it produced, and
returns its value (per image, mean over the batch) and any diagnostics worth logging beside it.
``code_outputs`` says which of the encoder's outputs form the code (all of them for a
deterministic bottleneck, the posterior mean of a Gaussian one).
"""

from __future__ import annotations

import torch
from torch import nn

from ae_lab.models.jacobian import jacobian_frobenius_sq
from ae_lab.models.losses import l1_penalty


class Penalty:
    name = "penalty"

    def __init__(self, weight: float) -> None:
        if not weight >= 0:
            raise ValueError(f"model.penalty.weight must be >= 0, got {weight}")
        self.weight = float(weight)

    def value(
        self, encoder: nn.Module, x_in: torch.Tensor, code: torch.Tensor, code_outputs: slice
    ) -> torch.Tensor:
        raise NotImplementedError

    def diagnostics(self, code: torch.Tensor) -> dict[str, torch.Tensor]:
        """Quantities logged beside the penalty (not optimised); none by default."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(weight={self.weight})"


class L1Penalty(Penalty):
    """Sparsity: ``||z||_1``. Logs ``active``, the share of code entries with ``|z| > threshold``."""

    name = "l1"

    def __init__(self, weight: float = 0.05, active_threshold: float = 0.01) -> None:
        super().__init__(weight)
        self.active_threshold = float(active_threshold)

    def value(self, encoder, x_in, code, code_outputs) -> torch.Tensor:
        return l1_penalty(code)

    def diagnostics(self, code: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"active": (code.detach().abs() > self.active_threshold).float().mean()}


class ContractivePenalty(Penalty):
    """``||dz/dx||_F^2``, the encoder Jacobian's squared Frobenius norm, computed exactly: the code
    is made insensitive to small changes of the input."""

    name = "contractive"

    def __init__(self, weight: float = 0.01) -> None:
        super().__init__(weight)

    def value(self, encoder, x_in, code, code_outputs) -> torch.Tensor:
        return jacobian_frobenius_sq(encoder, x_in, code_outputs)


class KLSparsityPenalty(Penalty):
    """Ng's sparse-autoencoder penalty: the mean activation of each code unit over the batch is
    pushed towards a small ``target`` ρ.

    The formulation needs activations in (0, 1), so for the penalty the code is squashed with a
    sigmoid: ``ρ̂_j = mean over the batch of sigmoid(z_j)``, clamped into ``(eps, 1 - eps)``. The
    code the decoder sees is unchanged. ``squash=False`` reads a code already in (0, 1) as it is
    (a net whose code activation is a sigmoid, as ae_bakeoff's sparse model). The value is ``Σ_j KL(ρ ‖ ρ̂_j) = Σ_j [ρ log(ρ / ρ̂_j) +
    (1 - ρ) log((1 - ρ) / (1 - ρ̂_j))]``, summed over the code units like the other penalties.
    Reduction: it is a per-batch quantity, not a mean of per-image values: the batch enters only
    through ``ρ̂`` (so it does not grow with the batch size; a batch of one image gives the
    per-image KL). Logs ``mean_activation``, the mean of ``ρ̂`` over the units.
    """

    name = "kl_sparsity"
    eps = 1e-6

    def __init__(self, weight: float = 1.0, target: float = 0.05, squash: bool = True) -> None:
        super().__init__(weight)
        if not 0 < target < 1:
            raise ValueError(f"model.penalty.target must be in (0, 1), got {target}")
        self.target = float(target)
        self.squash = bool(squash)

    def mean_activation(self, code: torch.Tensor) -> torch.Tensor:
        """``ρ̂``: each unit's mean (sigmoid) activation over the batch, ``(units,)``, in float32."""
        code = code.float().flatten(1)
        rho_hat = (torch.sigmoid(code) if self.squash else code).mean(dim=0)
        return rho_hat.clamp(self.eps, 1 - self.eps)

    def value(self, encoder, x_in, code, code_outputs) -> torch.Tensor:
        rho, rho_hat = self.target, self.mean_activation(code)
        kl = rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))
        return kl.sum()

    def diagnostics(self, code: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"mean_activation": self.mean_activation(code.detach()).mean()}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(weight={self.weight}, target={self.target}, "
            f"squash={self.squash})"
        )
