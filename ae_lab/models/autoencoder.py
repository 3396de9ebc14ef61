"""The one LightningModule: an autoencoder assembled from parts.

* a **net**: a factory ``(input_shape, latent_dim, code_dim) -> (encoder, decoder)``, dense or conv;
* a **bottleneck**: ``deterministic``, ``gaussian`` (a VAE: posterior ``q(z|x)``, prior
  ``N(0, I)``, the KL weighted by ``beta`` with a linear warm-up) or ``vq`` (a codebook: codes are
  its entries, :mod:`ae_lab.models.quantize`);
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
    (vq: + codebook + commitment * commitment term, in place of the KL)

with ``z`` drawn from the bottleneck given the (possibly corrupted) input. ``recon`` is the
negative log-likelihood without the Gaussian's constant (see :mod:`ae_lab.models.losses`); so
``beta = 1`` is the ELBO (docs/models.md: other codebases' KL weights in these units). A model
with a corruption also reports, in validation and test, ``recon_clean``: the error of its
deterministic reconstruction of the clean image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import lightning as L
import torch

from ae_lab.models import metric_logging as logs
from ae_lab.models.bottleneck import CODEBOOK_SETTINGS, make_bottleneck
from ae_lab.models.codebook_usage import codebook_metrics
from ae_lab.models.evaluation import evaluation_metrics
from ae_lab.models.losses import likelihood_constant, reconstruction_error_per_example
from ae_lab.models.optimization import configure
from ae_lab.models.spec import Spec, build
from ae_lab.nets.mlp import MLPEncoder, is_linear_map

OUTPUT_ACTIVATIONS = {"sigmoid": torch.sigmoid, "identity": lambda t: t}


@dataclass(frozen=True)
class Supports:
    """What a model can do beyond encode/decode; figures and evaluation follow these flags."""

    prior: bool  # a Gaussian bottleneck: sample(), KL, importance-sampled likelihood
    corruption: bool  # trained on corrupted inputs: corrupt(), the denoising panel
    linear_map: bool  # the whole model is one matrix: weight_product(), the W2·W1 heatmap
    dense_encoder: bool = False  # an MLP encoder: first_layer_weights(), the filters figure
    quantized: bool = False  # a codebook (vq): codes are its entries; its usage logged


class Autoencoder(L.LightningModule):
    """Args:
    input_shape: ``(C, H, W)`` of one image; passed in by ``ae_lab.run.train`` from the data.
    net: spec of a factory ``(input_shape, latent_dim, code_dim) -> (encoder, decoder)``; the
        decoder emits logits shaped like the input.
    optimizer: spec of a factory ``params -> torch.optim.Optimizer`` (a Hydra ``_partial_``).
    latent_dim: size of the code; ``None``: as wide as the input (the trivial solution).
    bottleneck: ``deterministic``, ``gaussian`` or ``vq``.
    beta, warmup_steps: the KL weight and its linear warm-up in steps (Gaussian only).
    codebook_size, codebook_dim, commitment, ema, per_unit, dead_code_steps, codebook_init: the
        codebook (vq only; ``None``: the quantiser's default): see
        :class:`~ae_lab.models.quantize.VectorQuantizer`.
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
        bottleneck: Literal["deterministic", "gaussian", "vq"] = "deterministic",
        beta: float | None = None,
        warmup_steps: int = 0,
        codebook_size: int | None = None,
        codebook_dim: int | None = None,
        commitment: float | None = None,
        ema: float | None = None,
        per_unit: bool = False,
        dead_code_steps: int | None = None,
        codebook_init: Literal["data", "uniform"] | None = None,
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
        codebook = {name: self.hparams[name] for name in CODEBOOK_SETTINGS}
        self.bottleneck = make_bottleneck(
            bottleneck, beta, warmup_steps, self.latent_dim, **codebook
        )
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
            and self.bottleneck.name == "deterministic"
            and self.hparams.output_activation == "identity",
            dense_encoder=isinstance(self.encoder, MLPEncoder),
            quantized=self.bottleneck.name == "vq",
        )
        self.optimizer_factory = build(optimizer)
        self.scheduler_factory = build(scheduler)
        self.metrics = evaluation_metrics(self.latent_dim, self.supports.prior)
        if self.supports.quantized:
            self.metrics.update(codebook_metrics(self.bottleneck.entries))
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
    def objective(self, x: torch.Tensor, stage: str | None = None) -> dict[str, torch.Tensor]:
        """Named loss terms for a batch (per image, mean over the batch); ``loss`` is minimised.
        ``stage`` (``train``, ``val``, ``test``): whose codebook usage the batch counts in."""
        x_in = self.corruption(x) if self.corruption is not None else x
        h = self.encoder(x_in)
        quantized = self.bottleneck(h) if self.supports.quantized else None
        z = self.bottleneck.sample(h) if quantized is None else quantized.z
        recon = reconstruction_error_per_example(
            self.decoder(z), x, self.likelihood, self.output_activation
        ).mean()
        terms = {"recon": recon}
        loss = recon
        if quantized is not None:
            loss = loss + quantized.loss
            terms.update(quantized.terms)
            if stage is not None:
                self.metrics[f"{stage}_codebook"].update(quantized.indices)
        if self.supports.prior:
            kl = self.bottleneck.kl(h).mean()
            beta = self.bottleneck.beta_at(self.global_step)
            constant = likelihood_constant(self.likelihood, x[0].numel())
            loss = loss + beta * kl
            terms.update(kl=kl, elbo=-(recon + constant + kl))
            if self.training:
                terms["beta"] = beta  # the weight in use (warm-up), a training curve
        if self.penalty is not None:  # (vq: on the encoder's output, which has a gradient)
            code = h if quantized is not None else self.bottleneck.code(h)
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
        terms = self.objective(x, "train")
        loss = terms["loss"]
        self._epoch_loss.add_(loss.detach(), alpha=len(x))  # the epoch's mean, without a sync
        self._epoch_images += len(x)
        if logs.writes_step_values(self.trainer, self.global_step):
            self.log("train/loss", loss, prog_bar=True, batch_size=len(x))
            others = {f"train/{name}": value for name, value in terms.items() if name != "loss"}
            others["train/lr"] = self.trainer.optimizers[0].param_groups[0]["lr"]
            self.log_dict(others, batch_size=len(x))
        return loss

    def on_train_epoch_start(self) -> None:
        # float32 whatever the precision: summed in place every step
        self._epoch_loss = torch.zeros((), device=self.device, dtype=torch.float32)
        self._epoch_images = 0

    def on_train_epoch_end(self) -> None:
        if self._epoch_images:  # the mean training loss of the epoch, beside the per-step curve
            mean = self._epoch_loss / self._epoch_images
            self.log("train/loss_epoch", mean, sync_dist=True)
        logs.log_codebook_usage(self, "train")

    def on_validation_epoch_end(self) -> None:
        logs.log_codebook_usage(self, "val")

    def on_test_epoch_end(self) -> None:
        logs.log_codebook_usage(self, "test")

    def _step(self, batch: Any, stage: str) -> None:
        x = batch[0]
        terms = self.objective(x, stage)
        if stage == "test" and self.supports.prior:
            terms.update(logs.likelihood_terms(self, x))
        options = {"batch_size": x.shape[0], "sync_dist": True}
        loss = terms.pop("loss")
        self.log(f"{stage}/loss", loss, prog_bar=True, **options)
        terms.update(logs.log_clean_reconstruction(self, x, stage))
        self.log_dict({f"{stage}/{name}": value for name, value in terms.items()}, **options)

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
