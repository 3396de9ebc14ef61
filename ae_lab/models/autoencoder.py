"""The one LightningModule: an autoencoder assembled from parts.

* a **net**: a factory ``(input_shape, latent_dim, code_dim) -> (encoder, decoder)``, dense or conv;
* a **bottleneck**: ``deterministic``, or ``gaussian`` (a VAE: posterior ``q(z|x)``, prior
  ``N(0, I)``, the KL weighted by ``beta`` with a linear warm-up);
* an optional input **corruption** (masking, Gaussian, salt-and-pepper): the model reconstructs
  the clean image from the corrupted one (a denoising model);
* an optional code **penalty** (L1, contractive), added as ``penalty.weight * value``.

So a denoising VAE is ``model=vae model/corruption=masking`` and a sparse conv AE
``model=cnn_ae model/penalty=l1``: no class per combination. The model declares what it supports
(:class:`Supports`), and the figures and the evaluation read it through a small public API:
``encode``, ``decode``, ``reconstruct`` (= ``forward``), ``interpolate``, ``sample`` (with a
prior), ``corrupt`` (with a corruption), ``weight_product`` (a linear map),
``first_layer_weights`` (a dense encoder).

The objective, per image (summed over pixels and latent units, mean over the batch)::

    loss = recon(decode(z), x) + beta_t * KL(q(z|x) || p(z)) + penalty.weight * penalty(z)

with ``z`` drawn from the bottleneck given the (possibly corrupted) input. ``recon`` is the
negative log-likelihood without the Gaussian's constant (see :mod:`ae_lab.models.losses`); so
``beta = 1`` is the ELBO (docs/models.md: other codebases' KL weights in these units).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import lightning as L
import torch
from hydra.utils import instantiate

from ae_lab.models.bottleneck import make_bottleneck
from ae_lab.models.evaluation import evaluation_metrics, importance_sampled_log_likelihood
from ae_lab.models.losses import likelihood_constant, reconstruction_error_per_example
from ae_lab.models.optimization import configure
from ae_lab.nets.mlp import MLPEncoder, is_linear_map

#: A part of the model given either as a plain config (``{"_target_": ..., ...}``, kept in the
#: checkpoint's hyperparameters, so ``load_from_checkpoint`` rebuilds it with ``weights_only``
#: loading) or directly as a Python object (a factory, a callable).
Spec = Mapping[str, Any] | Callable[..., Any]
OUTPUT_ACTIVATIONS = {"sigmoid": torch.sigmoid, "identity": lambda t: t}


def build(spec: Spec | None) -> Any:
    """The object a spec describes: ``instantiate`` for a config, the object itself otherwise."""
    if spec is None:
        return None
    return instantiate(spec, _convert_="all") if isinstance(spec, Mapping) else spec


@dataclass(frozen=True)
class Supports:
    """What a model can do beyond encode/decode; figures and evaluation follow these flags."""

    prior: bool  # a Gaussian bottleneck: sample(), KL, importance-sampled likelihood
    corruption: bool  # trained on corrupted inputs: corrupt(), the denoising panel
    linear_map: bool  # the whole model is one matrix: weight_product(), the W2·W1 heatmap
    dense_encoder: bool = False  # an MLP encoder: first_layer_weights(), the filters figure


class Autoencoder(L.LightningModule):
    """Args:
    input_shape: ``(C, H, W)`` of one image; passed in by ``ae_lab.run.train`` from the data.
    net: spec of a factory ``(input_shape, latent_dim, code_dim) -> (encoder, decoder)``; the
        decoder emits logits shaped like the input.
    optimizer: spec of a factory ``params -> torch.optim.Optimizer`` (a Hydra ``_partial_``).
    latent_dim: size of the code; ``None``: as wide as the input (the trivial solution).
    bottleneck: ``deterministic`` or ``gaussian``.
    beta, warmup_steps: the KL weight and its linear warm-up in steps (Gaussian only).
    corruption: optional spec of a callable ``x -> corrupted x``.
    penalty: optional spec of a :class:`~ae_lab.models.penalty.Penalty`.
    scheduler: optional spec of a factory ``optimizer -> LRScheduler``, stepped every batch;
        ``total_steps`` (``OneCycleLR``) or ``T_max`` (``CosineAnnealingLR``) left unset is filled
        in with the run's length in steps.
    likelihood: ``gaussian`` (summed squared error) or ``bernoulli`` (binary cross-entropy).
    output_activation: ``sigmoid`` (images in [0, 1]) or ``identity`` (a linear model).
    nll_samples: importance samples per test image for ``test/nll`` (models with a prior).
    compile: ``torch.compile`` the encoder and decoder (in place: checkpoints are unchanged). Off
        by default: on a CPU it is no faster for these nets and compiling takes a while.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        net: Spec,
        optimizer: Spec,
        latent_dim: int | None = None,
        bottleneck: str = "deterministic",
        beta: float | None = None,
        warmup_steps: int = 0,
        corruption: Spec | None = None,
        penalty: Spec | None = None,
        scheduler: Spec | None = None,
        likelihood: Literal["gaussian", "bernoulli"] = "gaussian",
        output_activation: Literal["sigmoid", "identity"] = "sigmoid",
        nll_samples: int = 200,
        compile: bool = False,
    ) -> None:
        super().__init__()
        # The logger gets the whole Hydra config from ae_lab.run.train instead.
        self.save_hyperparameters(logger=False)
        # (each argument's type and range: ae_lab.run.checks; here what no single rule can say)
        if likelihood == "bernoulli" and output_activation != "sigmoid":
            raise ValueError("a bernoulli likelihood needs model.output_activation=sigmoid")
        self.input_shape = tuple(int(s) for s in input_shape)
        self.latent_dim = int(latent_dim) if latent_dim is not None else math.prod(self.input_shape)
        self.likelihood = likelihood
        self.output_activation = OUTPUT_ACTIVATIONS[output_activation]
        self.nll_samples = int(nll_samples)
        self.bottleneck = make_bottleneck(bottleneck, beta, warmup_steps)
        self.corruption = build(corruption)
        self.penalty = build(penalty)
        self.encoder, self.decoder = build(net)(
            input_shape=self.input_shape,
            latent_dim=self.latent_dim,
            code_dim=self.bottleneck.code_dim(self.latent_dim),
        )
        if compile:
            self.encoder.compile()
            self.decoder.compile()
        self.supports = Supports(
            prior=self.bottleneck.has_prior,
            corruption=self.corruption is not None,
            linear_map=is_linear_map(self.encoder, self.decoder)
            and not self.bottleneck.has_prior
            and self.hparams.output_activation == "identity",
            dense_encoder=isinstance(self.encoder, MLPEncoder),
        )
        self.optimizer_factory = build(optimizer)
        self.scheduler_factory = build(scheduler)
        self.metrics = evaluation_metrics(self.input_shape, self.latent_dim, self.supports.prior)
        # the epoch's summed training loss and image count (reset at each epoch's start)
        self._epoch_loss, self._epoch_images = torch.zeros(()), 0

    # ---- public API ----------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` in [0, 1] to codes ``(B, latent_dim)`` (a VAE: the posterior
        mean)."""
        return self.bottleneck.code(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, latent_dim)`` to images ``(B, C, H, W)``."""
        return self.output_activation(self.decoder(z))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The deterministic reconstruction ``decode(encode(x))``."""
        return self.decode(self.encode(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reconstruct(x)

    def interpolate(self, start: torch.Tensor, end: torch.Tensor, steps: int) -> torch.Tensor:
        """Images decoded along the straight line from each ``start`` image's code to its ``end``
        image's code: ``(pairs, steps, C, H, W)``."""
        a, b = self.encode(start), self.encode(end)
        t = torch.linspace(0, 1, steps, device=a.device, dtype=a.dtype).view(1, steps, 1)
        codes = (1 - t) * a.unsqueeze(1) + t * b.unsqueeze(1)
        return self.decode(codes.flatten(0, 1)).unflatten(0, codes.shape[:2])

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images decoded from codes drawn from the prior (models with a prior only)."""
        self._require("prior", "sample()")
        z = self.bottleneck.prior_sample(n, self.latent_dim, generator)
        return self.decode(z.to(device=self.device, dtype=self.dtype))

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        """The input corruption the model learns to undo (models with a corruption only)."""
        self._require("corruption", "corrupt()")
        return self.corruption(x)

    def weight_product(self) -> torch.Tensor:
        """``W_dec @ W_enc``, a ``(pixels, pixels)`` matrix (linear models only)."""
        self._require("linear_map", "weight_product()")
        return self.decoder.mlp.as_matrix() @ self.encoder.mlp.as_matrix()

    def first_layer_weights(self) -> torch.Tensor:
        """Each first-layer unit's incoming weights shaped like an input image, ``(units, C, H,
        W)`` (dense encoders only): what the unit responds to."""
        self._require("dense_encoder", "first_layer_weights()")
        return self.encoder.first_layer_weights()

    def kl_per_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over ``x`` of ``KL(q(z_u|x) || p(z_u))`` per latent unit (models with a prior)."""
        self._require("prior", "kl_per_unit()")
        return self.bottleneck.kl_per_unit(*self.bottleneck.posterior(self.encoder(x))).mean(0)

    def _require(self, capability: str, what: str) -> None:
        if not getattr(self.supports, capability):
            raise TypeError(f"{what} needs a model with {capability.replace('_', ' ')}")

    # ---- the objective -------------------------------------------------------------------------
    def objective(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named loss terms for a batch (per image, mean over the batch); ``loss`` is minimised."""
        x_in = self.corruption(x) if self.corruption is not None else x
        h = self.encoder(x_in)
        z = self.bottleneck.sample(h)
        recon = reconstruction_error_per_example(
            self.decoder(z), x, self.likelihood, self.output_activation
        ).mean()
        terms = {"recon": recon}
        loss = recon
        if self.supports.prior:
            kl = self.bottleneck.kl(h).mean()
            beta = self.bottleneck.beta_at(self.global_step)
            constant = likelihood_constant(self.likelihood, x[0].numel())
            loss = loss + beta * kl
            terms.update(kl=kl, elbo=-(recon + constant + kl))
            if self.training:
                terms["beta"] = beta  # the weight in use (warm-up), a training curve
        if self.penalty is not None:
            code = self.bottleneck.code(h)
            penalty = self.penalty.value(self.encoder, x_in, code, self._code_outputs())
            loss = loss + self.penalty.weight * penalty
            terms.update(penalty=penalty, **self.penalty.diagnostics(code))
        return {"loss": loss, **terms}

    def _code_outputs(self) -> slice:
        """The encoder outputs that form the code (a Gaussian's mean: the first half)."""
        return slice(0, self.latent_dim)

    # ---- Lightning -----------------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x = batch[0]
        terms = self.objective(x)
        loss = terms["loss"]
        self._epoch_loss.add_(loss.detach(), alpha=len(x))  # the epoch's mean, without a sync
        self._epoch_images += len(x)
        if self._writes_step_values():
            self.log("train/loss", loss, prog_bar=True, batch_size=len(x))
            others = {f"train/{name}": value for name, value in terms.items() if name != "loss"}
            others["train/lr"] = self.trainer.optimizers[0].param_groups[0]["lr"]
            self.log_dict(others, batch_size=len(x))
        return loss

    def _writes_step_values(self) -> bool:
        """Whether Lightning writes this step's logged values: every ``log_every_n_steps``
        optimizer steps, on stop, in a fast dev run. Only then are they logged: a ``self.log``
        call costs as much written or not (benchmarks/README.md)."""
        trainer = self.trainer
        every = max(1, trainer.log_every_n_steps)
        return (
            (self.global_step + 1) % every == 0 or trainer.should_stop or bool(trainer.fast_dev_run)
        )

    def on_train_epoch_start(self) -> None:
        # float32 whatever the precision: summed in place every step
        self._epoch_loss = torch.zeros((), device=self.device, dtype=torch.float32)
        self._epoch_images = 0

    def on_train_epoch_end(self) -> None:
        if self._epoch_images:  # the mean training loss of the epoch, beside the per-step curve
            mean = self._epoch_loss / self._epoch_images
            self.log("train/loss_epoch", mean, sync_dist=True)

    def _step(self, batch: Any, stage: str) -> None:
        x = batch[0]
        terms = self.objective(x)
        if stage == "test" and self.supports.prior:
            terms.update(self._likelihood_terms(x))
        options = {"batch_size": x.shape[0], "sync_dist": True}
        loss = terms.pop("loss")
        self.log(f"{stage}/loss", loss, prog_bar=True, **options)
        self.log_dict({f"{stage}/{name}": value for name, value in terms.items()}, **options)
        self._log_image_quality(x, stage)

    def _likelihood_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``nll`` (importance-sampled ``-log p(x)``) and ``elbo`` from the same samples, so
        ``nll <= -elbo`` image by image (Jensen); and the active units' update."""
        log_px, elbo = importance_sampled_log_likelihood(self, x, self.nll_samples)
        active = self.metrics["test_active_units"]
        active.update(self.encode(x))
        self.log("test/active_units", active, batch_size=x.shape[0])
        return {"nll": -log_px.mean(), "elbo": elbo.mean()}

    def _log_image_quality(self, x: torch.Tensor, stage: str) -> None:
        reconstruction = self.reconstruct(x).float().clamp(0, 1)
        for name in ("psnr", "ssim"):
            metric = self.metrics[f"{stage}_{name}"]
            metric.update(reconstruction, x)
            self.log(f"{stage}/{name}", metric, batch_size=x.shape[0])

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self) -> Any:
        return configure(
            self.optimizer_factory,
            self.scheduler_factory,
            self.parameters(),
            run_steps=lambda: self.trainer.estimated_stepping_batches,
        )
