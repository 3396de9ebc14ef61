"""A density fitted to codes, to draw new codes from: one Gaussian, or a mixture of them
(scikit-learn's ``GaussianMixture``, as pythae's GMM sampler fits one to a trained model's codes).

It gives a deterministic autoencoder something to sample from, and a VAE a second source beside its
prior: when the codes of the training images (the aggregate posterior) do not fill the prior,
codes drawn from a density fitted to them decode to sharper images than prior samples do.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

Kind = Literal["gaussian", "gmm"]
Covariance = Literal["full", "diag", "tied", "spherical"]
KINDS: tuple[str, ...] = ("gaussian", "gmm")
COVARIANCES: tuple[str, ...] = ("full", "diag", "tied", "spherical")
#: added to the diagonal of every covariance, relative to the codes' mean variance: keeps a
#: component of few codes, or codes with a constant unit, positive definite at any code scale
REG_COVAR = 1e-6
#: multiply-adds one EM iteration may take, so a fit takes seconds: see :func:`affordable`
WORK = 5e8


@dataclass(frozen=True)
class CodeDensity:
    """A fitted density: ``weights`` ``(K,)``, ``means`` ``(K, latent)`` and ``covariances``
    ``(K, latent, latent)`` (whatever the covariance type, as full matrices), float64 on the CPU.
    ``converged``: whether EM converged within its iterations (a figure can use it either way)."""

    kind: str
    covariance_type: str
    weights: torch.Tensor
    means: torch.Tensor
    covariances: torch.Tensor
    converged: bool

    @property
    def components(self) -> int:
        return len(self.weights)

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` codes ``(n, latent)`` float32 on the CPU, in the order drawn (a component for
        each by its weight, then the code from its Gaussian); the same ``seed``, the same codes."""
        generator = torch.Generator().manual_seed(int(seed))
        which = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.means.shape[1], generator=generator, dtype=torch.float64)
        scale = torch.linalg.cholesky(self.covariances)  # one (latent, latent) factor a component
        codes = torch.empty_like(noise)
        for component in which.unique().tolist():
            rows = which == component
            codes[rows] = self.means[component] + noise[rows] @ scale[component].T
        return codes.float()


def fit_density(
    codes: torch.Tensor,
    kind: Kind = "gmm",
    components: int = 10,
    covariance_type: Covariance = "full",
    seed: int = 0,
    max_iter: int = 100,
) -> CodeDensity:
    """A density fitted to ``codes`` ``(N, latent)``: ``gaussian`` (one component: ``components``
    is not used) or ``gmm`` (a mixture of ``components`` Gaussians, k-means initialised, EM for at
    most ``max_iter`` iterations), each covariance ``full``, ``diag``, ``tied`` or ``spherical``.
    Seeded: the same codes and settings give the same density. A ValueError says which setting to
    change when the settings are invalid or there are too few codes."""
    if kind not in KINDS:
        raise ValueError(f"density kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if covariance_type not in COVARIANCES:
        raise ValueError(
            f"covariance must be one of {', '.join(COVARIANCES)}, got {covariance_type!r}"
        )
    if isinstance(components, bool) or not isinstance(components, int) or components < 1:
        raise ValueError(f"components must be an integer >= 1, got {components!r}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    k = 1 if kind == "gaussian" else components
    x = torch.as_tensor(codes).detach().double().cpu()
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"codes must be shaped (N, latent), got {tuple(x.shape)}")
    if len(x) < max(2, k):
        raise ValueError(
            f"a density of {k} component{'s' * (k > 1)} needs at least {max(2, k)} codes, got "
            f"{len(x)}: fit fewer components or give it more codes"
        )
    if not torch.isfinite(x).all():
        raise ValueError("the codes hold NaN or infinite values: no density fits them")
    spread = float(x.var(dim=0).mean()) if len(x) > 1 else 0.0
    mixture = GaussianMixture(
        n_components=k,
        covariance_type=covariance_type,
        max_iter=int(max_iter),
        reg_covar=REG_COVAR * (spread if spread > 0 else 1.0),
        random_state=int(seed),
    )
    # one BLAS thread: OpenBLAS's threads spinning beside torch's slow a fit by tens of times
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # reported as `converged` instead
        try:
            mixture.fit(x.numpy())
        except ValueError as error:  # a component collapsed onto too few distinct codes
            raise ValueError(
                f"no {k}-component {covariance_type}-covariance density fits these codes "
                f"({error}): fit fewer components, or covariance=diag"
            ) from None
    return CodeDensity(
        kind=kind,
        covariance_type=covariance_type,
        weights=torch.as_tensor(mixture.weights_, dtype=torch.float64),
        means=torch.as_tensor(mixture.means_, dtype=torch.float64),
        covariances=torch.as_tensor(full_covariances(mixture), dtype=torch.float64),
        converged=bool(mixture.converged_),
    )


def full_covariances(mixture: GaussianMixture) -> np.ndarray:
    """A fitted mixture's covariances as ``(K, latent, latent)`` matrices, whatever their type."""
    k, d = mixture.means_.shape
    covariances = mixture.covariances_
    if mixture.covariance_type == "full":
        return covariances
    if mixture.covariance_type == "tied":
        return np.broadcast_to(covariances, (k, d, d)).copy()
    if mixture.covariance_type == "diag":
        return covariances[:, :, None] * np.eye(d)
    return covariances[:, None, None] * np.eye(d)  # spherical: one variance a component


def affordable(latent_dim: int, components: int, covariance_type: str, work: float = WORK) -> int:
    """The most codes one EM iteration can use within ``work`` multiply-adds: a full (or tied)
    covariance costs ``latent**2`` per code and component, a diagonal one ``latent``. A wide latent
    is fitted on fewer codes rather than for minutes, but never on fewer than ``latent`` codes with
    a full covariance: there, factoring each component's ``latent x latent`` matrix (every
    iteration, whatever the codes) costs as much as that many codes."""
    full = covariance_type in ("full", "tied")
    per_code = components * (latent_dim**2 if full else latent_dim)
    return max(2, math.floor(work / max(1, per_code)), latent_dim if full else 0)
