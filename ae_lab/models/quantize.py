"""A vector-quantised bottleneck (van den Oord et al., 2017, "Neural Discrete Representation
Learning"): the code the decoder sees is made of codebook entries.

The encoder's ``latent_dim`` outputs ``h`` are cut into ``latent_dim / codebook_dim`` vectors, each
replaced by its nearest (Euclidean) entry ``e`` of a codebook of ``codebook_size`` vectors. The
decoder's gradient reaches the encoder through the straight-through estimator
``z = h + sg(e - h)``; two terms (:mod:`ae_lab.models.losses`) train the rest::

    codebook    ||sg(h) - e||^2   moves the codebook (left out with ``ema``: EMA updates instead)
    commitment  ||h - sg(e)||^2   weighted by ``commitment`` (beta): keeps the encoder near its codes

``per_unit``: ae_bakeoff's ``vq``: every latent unit quantised on its own to one of its own
``codebook_size`` scalar levels (``latent_dim`` codebooks of scalars, held as one codebook of
``latent_dim * codebook_size`` entries of ``codebook_dim = 1``, unit ``u``'s levels in block ``u``).

What training changes besides the gradient (in ``train()`` mode, in :meth:`VectorQuantizer.forward`):

* ``codebook_init="data"``: after the first training batch every code is set to one of that
  batch's encoder outputs, so the codes start where the data is (``"uniform"``: U(-1/K, 1/K) only,
  as ae_bakeoff and the reference implementations start).
* ``ema`` (a decay): each code becomes the running mean of the encoder outputs assigned to it,
  from exponential moving averages of their count and sum (the VQ-VAE paper's appendix).
* ``dead_code_steps``: a code no encoder output chose for that many training steps is restarted at
  a random encoder output of the current batch.

Under DDP every rank makes the same update: counts and sums are summed over the ranks and the
vectors that restart codes are rank 0's, in one all-reduce per step. No update makes the host wait
for the device: dead codes are masks, not branches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ae_lab.models.losses import codebook_loss, commitment_loss

#: Below this EMA count a code keeps its vector (its sum and count have decayed away together).
MIN_EMA_COUNT = 1e-6


@dataclass(frozen=True)
class Quantized:
    """What the quantiser makes of a batch of encoder outputs ``h`` ``(B, latent)``."""

    z: torch.Tensor  # the decoder's input: the codes, with the straight-through gradient to h
    codes: torch.Tensor  # the codebook entries chosen, shaped like h
    indices: torch.Tensor  # which entry, (B, latent // codebook_dim)
    loss: torch.Tensor  # codebook (learned codebook only) + commitment * commitment term
    terms: dict[str, torch.Tensor]  # "commitment", and "codebook" for a learned codebook


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


class VectorQuantizer(nn.Module):
    """Args:
    latent_dim: units of the code; a multiple of ``codebook_dim``.
    codebook_size: ``K``, the number of codebook entries.
    codebook_dim: units per codebook vector; ``None``: the whole code is one vector.
    commitment: ``beta``, the commitment term's weight.
    ema: decay of the EMA codebook updates; ``None``: the codebook is learned by gradient.
    per_unit: quantise each unit to one of its own ``K`` scalar levels (ae_bakeoff's ``vq``).
    dead_code_steps: restart a code unused for this many training steps; ``None``: never.
    codebook_init: ``data`` (codes set from the first training batch) or ``uniform``.
    """

    name = "vq"
    has_prior = False

    def __init__(
        self,
        latent_dim: int,
        codebook_size: int = 512,
        codebook_dim: int | None = None,
        commitment: float = 0.25,
        ema: float | None = None,
        per_unit: bool = False,
        dead_code_steps: int | None = None,
        codebook_init: Literal["data", "uniform"] = "data",
    ) -> None:
        super().__init__()
        if per_unit and codebook_dim not in (None, 1):
            raise ValueError(
                f"model.per_unit=true quantises each unit to a scalar level: leave "
                f"model.codebook_dim unset (null), not {codebook_dim}"
            )
        dim = 1 if per_unit else int(codebook_dim or latent_dim)
        if latent_dim % dim:
            raise ValueError(
                f"model.latent_dim={latent_dim} is not a multiple of model.codebook_dim={dim}: "
                "the code is cut into vectors of codebook_dim units"
            )
        if codebook_size < 2:
            raise ValueError(f"model.codebook_size must be >= 2, got {codebook_size}")
        if not commitment >= 0:
            raise ValueError(f"model.commitment must be >= 0, got {commitment}")
        if ema is not None and not 0 < ema < 1:
            raise ValueError(f"model.ema must be a decay between 0 and 1 (or null), got {ema}")
        if dead_code_steps is not None and dead_code_steps < 1:
            raise ValueError(f"model.dead_code_steps must be >= 1 (or null), got {dead_code_steps}")
        if codebook_init not in ("data", "uniform"):
            raise ValueError(f"model.codebook_init must be data or uniform, got {codebook_init!r}")
        self.codebook_size, self.codebook_dim = int(codebook_size), dim
        self.commitment, self.ema, self.per_unit = float(commitment), ema, bool(per_unit)
        self.dead_code_steps, self.latent_dim = dead_code_steps, int(latent_dim)
        #: rows of the codebook: K vectors, or K levels for each unit
        self.entries = self.codebook_size * (self.latent_dim if per_unit else 1)
        size = self.entries
        k = self.codebook_size
        codebook = torch.empty(size, dim).uniform_(-1 / k, 1 / k)
        if ema is None:
            self.codebook = nn.Parameter(codebook)
        else:
            self.register_buffer("codebook", codebook)
            self.register_buffer("ema_count", torch.ones(size))
            self.register_buffer("ema_sum", codebook.clone())
        self.register_buffer("idle_steps", torch.zeros(size, dtype=torch.long))
        self.register_buffer("initialized", torch.tensor(codebook_init == "uniform"))
        # whether the codes may still await their data initialisation (the buffer decides; kept
        # on the host so that a step need not read the device to know)
        self._may_be_fresh = codebook_init == "data"
        self.register_load_state_dict_post_hook(self._after_load)

    @staticmethod
    def _after_load(module: VectorQuantizer, incompatible_keys: object) -> None:
        """A loaded codebook (a resumed run) draws no initialisation: the same random numbers as
        the run that never stopped."""
        module._may_be_fresh = not bool(module.initialized)

    def extra_repr(self) -> str:
        return (
            f"codebook={self.codebook_size}x{self.codebook_dim}, commitment={self.commitment}, "
            f"ema={self.ema}, dead_code_steps={self.dead_code_steps}"
        )

    def code_dim(self, latent_dim: int) -> int:
        return latent_dim

    def vectors(self, h: torch.Tensor) -> torch.Tensor:
        """``h`` ``(B, latent)`` as the ``(B * latent / codebook_dim, codebook_dim)`` vectors that
        are quantised, in the codebook's precision."""
        return h.reshape(-1, self.codebook_dim).to(self.codebook.dtype)

    @torch.no_grad()
    def nearest(self, vectors: torch.Tensor) -> torch.Tensor:
        """The index of each vector's nearest codebook entry, ``(N,)``; in full precision under
        autocast (``||v||^2`` is the same for every entry and left out)."""
        with torch.autocast(vectors.device.type, enabled=False):
            codebook = self.codebook
            if self.per_unit:  # each unit against its own block of levels
                units, k = self.latent_dim, self.codebook_size
                levels = codebook.view(units, k)
                nearest = (vectors.view(-1, units, 1) - levels).abs().argmin(-1)
                offsets = torch.arange(units, device=vectors.device) * k
                return (nearest + offsets).flatten()
            return (codebook.square().sum(1) - 2 * vectors @ codebook.T).argmin(1)

    def code(self, h: torch.Tensor) -> torch.Tensor:
        """The codebook entries nearest to ``h``, shaped like ``h``: the code the figures show."""
        return F.embedding(self.nearest(self.vectors(h)), self.codebook).view(h.shape)

    def sample(self, h: torch.Tensor) -> torch.Tensor:
        """The decoder's input: the codes forward, the identity backward (straight-through)."""
        h = self.vectors(h).view(h.shape)
        return h + (self.code(h) - h).detach()

    def forward(self, h: torch.Tensor) -> Quantized:
        """Quantise ``h`` ``(B, latent)`` with its loss terms; in training also update the
        codebook's EMA, the idle counts and the restarts."""
        vectors = self.vectors(h)
        indices = self.nearest(vectors)
        codes = F.embedding(indices, self.codebook).view(h.shape)
        h = vectors.view(h.shape)
        terms = {"commitment": commitment_loss(h, codes)}
        loss = self.commitment * terms["commitment"]
        if self.ema is None:
            terms["codebook"] = codebook_loss(h, codes)
            loss = loss + terms["codebook"]
        if self.training:
            self.update(vectors.detach(), indices)
        z = h + (codes - h).detach()
        return Quantized(z, codes, indices.view(h.shape[0], -1), loss, terms)

    # ---- training-time updates -------------------------------------------------------------------
    @torch.no_grad()
    def update(self, vectors: torch.Tensor, indices: torch.Tensor) -> None:
        """One training step's bookkeeping, the same on every rank: idle counts, the EMA of the
        codebook, and codes restarted at encoder outputs (all codes, the first time, with
        ``codebook_init="data"``)."""
        size = self.entries
        restart = self.dead_code_steps is not None or self._may_be_fresh
        parts = {"counts": torch.bincount(indices, minlength=size).to(vectors.dtype)}
        if self.ema is not None:
            parts["sums"] = torch.zeros_like(self.codebook).index_add_(0, indices, vectors)
        if restart:  # with replacement: a batch may hold fewer vectors than the codebook
            if self.per_unit:  # a unit's levels restart at that unit's values
                values = vectors.view(-1, self.latent_dim)
                picks = torch.randint(len(values), (size,), device=vectors.device)
                units = torch.arange(size, device=vectors.device) // self.codebook_size
                parts["candidates"] = values[picks, units].unsqueeze(1)
            else:
                picks = torch.randint(len(vectors), (size,), device=vectors.device)
                parts["candidates"] = vectors[picks]
        if distributed():
            if "candidates" in parts and dist.get_rank() != 0:
                parts["candidates"] = torch.zeros_like(parts["candidates"])  # rank 0's, summed
            packed = torch.cat([part.flatten() for part in parts.values()])
            dist.all_reduce(packed)
            pieces = packed.split([part.numel() for part in parts.values()])
            parts = {k: p.view_as(parts[k]) for k, p in zip(parts, pieces, strict=True)}
        counts = parts["counts"]
        self.idle_steps.add_(1).masked_fill_(counts > 0, 0)
        if self.ema is not None:
            self.ema_count.mul_(self.ema).add_(counts, alpha=1 - self.ema)
            self.ema_sum.mul_(self.ema).add_(parts["sums"], alpha=1 - self.ema)
            count = self.ema_count.unsqueeze(1)
            means = self.ema_sum / count.clamp(min=MIN_EMA_COUNT)
            self.codebook.copy_(torch.where(count > MIN_EMA_COUNT, means, self.codebook))
        if restart:
            dead = (~self.initialized).expand(size)
            if self.dead_code_steps is not None:
                dead = dead | (self.idle_steps >= self.dead_code_steps)
            self.restart(dead, parts["candidates"])
            self.initialized.fill_(True)
            self._may_be_fresh = False

    @torch.no_grad()
    def restart(self, dead: torch.Tensor, vectors: torch.Tensor) -> None:
        """Set the codes where ``dead`` ``(K,)`` is true to the rows of ``vectors`` ``(K, dim)``."""
        mask = dead.unsqueeze(1)
        self.codebook.copy_(torch.where(mask, vectors, self.codebook))
        if self.ema is not None:
            self.ema_sum.copy_(torch.where(mask, vectors, self.ema_sum))
            self.ema_count.masked_fill_(dead, 1.0)
        self.idle_steps.masked_fill_(dead, 0)
