"""PCA as a reference for autoencoders: pure torch functions, no state.

* :func:`fit_pca`: the top-``k`` principal directions of flattened images ``(N, D)``, of the
  covariance (``centered=True``: for models with biases) or of the uncentered second moment
  ``X^T X / N`` (``centered=False``: what a linear autoencoder *without* biases can learn, since
  its reconstruction ``W_dec W_enc x`` cannot add a mean back). Baldi & Hornik (1989): at the
  optimum of the squared error, a linear autoencoder with a ``k``-unit bottleneck spans the top-``k``
  principal subspace.
* :func:`pca_reconstruction_error`: the error per image of the PCA reconstruction
  ``mean + C C^T (x - mean)``, in the units of the model's ``recon`` (summed over pixels).
* :func:`principal_angles`: the largest principal angle between two subspaces, in degrees.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: Images up to this many pixels get the exact eigendecomposition of the ``D x D`` (second-moment
#: or covariance) matrix; larger ones a randomized SVD of the data (``torch.svd_lowrank``).
EXACT_MAX_PIXELS = 8192
#: The Bernoulli reference clamps the PCA reconstruction into ``[EPS, 1 - EPS]`` (a linear
#: reconstruction leaves ``[0, 1]``, where the cross-entropy is undefined).
BERNOULLI_EPS = 1e-4


def fit_pca(
    x: torch.Tensor, k: int, centered: bool = True, chunk: int = 8192
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean (D,), components (D, k))`` of the rows of ``x`` ``(N, D)``: orthonormal columns,
    the directions of largest (centered: variance; uncentered: second moment) first. ``mean`` is
    zero when not ``centered``. ``k`` is capped at ``D`` (and, above
    :data:`EXACT_MAX_PIXELS`, at ``N``: the data's whole span). The ``D x D`` matrix is summed in
    float64 from float32 products of ``chunk`` rows and decomposed in float64 (``eigh``); the
    result is in ``x``'s floating dtype (float32 for anything else)."""
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"fit_pca needs a non-empty (N, D) matrix, got shape {tuple(x.shape)}")
    n, d = x.shape
    k = min(int(k), d)
    dtype = x.dtype if x.is_floating_point() else torch.float32
    mean = torch.zeros(d, dtype=torch.float64, device=x.device)
    if centered:
        for start in range(0, n, chunk):
            mean += x[start : start + chunk].double().sum(0)
        mean /= n
    if d <= EXACT_MAX_PIXELS:
        moment = torch.zeros(d, d, dtype=torch.float64, device=x.device)
        for start in range(0, n, chunk):  # float32 products (fast), summed in float64
            part = x[start : start + chunk].float() - mean.float()
            moment += (part.T @ part).double()
        _, vectors = torch.linalg.eigh(moment / n)  # ascending eigenvalues
        components = vectors.flip(-1)[:, :k]
    else:  # D x D would not fit: the top right singular vectors of the (centered) data
        q = min(k + 10, n, d)
        _, _, v = torch.svd_lowrank(x.double() - mean, q=q, niter=4)
        components = v[:, :k]  # fewer than k when there are fewer images: the data's span
    return mean.to(dtype), components.to(dtype)


def pca_reconstruct(
    x: torch.Tensor, mean: torch.Tensor, components: torch.Tensor | None
) -> torch.Tensor:
    """``mean + C C^T (x - mean)`` for rows ``x`` ``(N, D)``; ``components=None``: ``x`` itself
    (as many components as pixels reconstruct perfectly)."""
    if components is None:
        return x
    centered = x - mean
    return mean + (centered @ components) @ components.T


def pca_reconstruction_error(
    x: torch.Tensor,
    mean: torch.Tensor,
    components: torch.Tensor | None,
    likelihood: str = "gaussian",
) -> torch.Tensor:
    """The error per image ``(N,)`` of the PCA reconstruction of rows ``x`` ``(N, D)``, in the
    units of the model's ``recon`` (:func:`ae_lab.models.losses.reconstruction_error_per_example`):

    * ``gaussian``: the summed squared error ``||x - x_pca||^2`` (the reconstruction unclamped:
      PCA as it is);
    * ``bernoulli``: the binary cross-entropy summed over pixels, of the PCA reconstruction
      clamped into ``[BERNOULLI_EPS, 1 - BERNOULLI_EPS]``.
    """
    x = x.flatten(1).float()
    recon = pca_reconstruct(x, mean.float(), None if components is None else components.float())
    if likelihood == "gaussian":
        if components is None:
            return torch.zeros(len(x), device=x.device)
        return (x - recon).square().sum(1)
    if likelihood == "bernoulli":
        p = recon.clamp(BERNOULLI_EPS, 1 - BERNOULLI_EPS)
        return F.binary_cross_entropy(p, x, reduction="none").sum(1)
    raise ValueError(f"unknown likelihood {likelihood!r}")


def principal_angles(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest principal angle, in degrees, between the column spaces of ``a`` ``(D, k_a)``
    and ``b`` ``(D, k_b)`` (both of full column rank): 0 when one space contains the other, 90
    when some direction of the smaller is orthogonal to the larger.

    Both are orthonormalised (QR, float64); the cosines are the singular values of
    ``Q_a^T Q_b``. The angle is ``atan2(sin, cos)`` with the sine from the part of the smaller
    space outside the larger (``||(I - Q_l Q_l^T) Q_s||_2``), so a small angle is exact where
    ``arccos`` of a cosine near 1 would lose half the digits."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(
            f"two (D, k) matrices of the same D, got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    qa = torch.linalg.qr(a.detach().double())[0]
    qb = torch.linalg.qr(b.detach().double().to(qa.device))[0]
    small, large = (qa, qb) if qa.shape[1] <= qb.shape[1] else (qb, qa)
    cosine = torch.linalg.svdvals(large.T @ small).min().clamp(0, 1)
    sine = torch.linalg.matrix_norm(small - large @ (large.T @ small), ord=2).clamp(0, 1)
    return math.degrees(math.atan2(float(sine), float(cosine)))


def decoder_directions(model: torch.nn.Module) -> torch.Tensor:
    """The decoder's matrix ``W_dec`` ``(pixels, latent_dim)`` of a linear autoencoder (one whose
    ``supports.linear_map``): its columns span the images it can reconstruct."""
    if not model.supports.linear_map:
        raise TypeError("decoder_directions() needs a model with a linear map")
    return model.decoder.mlp.as_matrix()
