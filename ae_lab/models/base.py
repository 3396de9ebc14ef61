"""The one LightningModule every variant shares: nets, the training loop's steps, optimisers.

A variant only says what its objective is (``objective(x) -> dict of named terms``). The public API
the callbacks rely on: ``encode``, ``decode``, ``forward`` (and ``sample`` for a VAE).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from torchmetrics.image import PeakSignalNoiseRatio

from ae_lab.models.losses import LIKELIHOODS

#: A part of the model given either as a plain config (``{"_target_": ..., ...}``, kept in the
#: checkpoint's hyperparameters, so ``load_from_checkpoint`` rebuilds it with ``weights_only``
#: loading) or directly as a Python object (a factory, a callable).
Spec = Mapping[str, Any] | Callable[..., Any]
RUN_LENGTH_ARGUMENTS = ("total_steps", "T_max")
OUTPUT_ACTIVATIONS = {"sigmoid": torch.sigmoid, "identity": lambda t: t}


def build(spec: Spec) -> Any:
    """The object a spec describes: ``instantiate`` for a config, the object itself otherwise."""
    return instantiate(spec, _convert_="all") if isinstance(spec, Mapping) else spec


class AutoencoderBase(L.LightningModule):
    """Encoder + decoder built from the data's shape.

    Args:
        input_shape: ``(C, H, W)`` of one image; passed in by ``ae_lab.train.run`` from the data.
        latent_dim: size of the code; ``None`` means as wide as the input (the trivial solution).
        net: spec of a factory ``(input_shape, latent_dim, code_dim) -> (encoder, decoder)``; the
            decoder emits logits shaped like the input.
        optimizer: spec of a factory ``params -> torch.optim.Optimizer`` (a Hydra ``_partial_``).
        scheduler: optional spec of a factory ``optimizer -> LRScheduler``, stepped every batch;
            ``total_steps`` (``OneCycleLR``) or ``T_max`` (``CosineAnnealingLR``) left unset is
            filled in with the run's length in steps.
        likelihood: ``gaussian`` (summed squared error) or ``bernoulli`` (binary cross-entropy).
        output_activation: ``sigmoid`` (images in [0, 1]) or ``identity`` (a linear model).
    """

    #: how many encoder outputs each latent unit needs (2 for a Gaussian posterior's mean and
    #: log-variance)
    codes_per_latent = 1

    def __init__(
        self,
        input_shape: Sequence[int],
        net: Spec,
        optimizer: Spec,
        latent_dim: int | None = None,
        scheduler: Spec | None = None,
        likelihood: str = "gaussian",
        output_activation: str = "sigmoid",
    ) -> None:
        super().__init__()
        # The logger gets the whole Hydra config from ae_lab.train instead.
        self.save_hyperparameters(logger=False)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(
                f"output_activation must be one of {sorted(OUTPUT_ACTIVATIONS)}, got {output_activation!r}"
            )
        if likelihood == "bernoulli" and output_activation != "sigmoid":
            raise ValueError("a bernoulli likelihood needs output_activation=sigmoid")
        self.input_shape = tuple(int(s) for s in input_shape)
        self.latent_dim = int(latent_dim) if latent_dim is not None else math.prod(self.input_shape)
        self.likelihood = likelihood
        self.output_activation = OUTPUT_ACTIVATIONS[output_activation]
        self.encoder, self.decoder = build(net)(
            input_shape=self.input_shape,
            latent_dim=self.latent_dim,
            code_dim=self.codes_per_latent * self.latent_dim,
        )
        # PSNR of the deterministic reconstruction forward(x) against x, over a whole epoch
        self.psnr = torch.nn.ModuleDict(
            {stage: PeakSignalNoiseRatio(data_range=1.0) for stage in ("val", "test")}
        )
        self.optimizer_factory = build(optimizer)
        self.scheduler_factory = build(scheduler) if scheduler is not None else None

    # ---- public API --------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` in [0, 1] to codes ``(B, latent_dim)``."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, latent_dim)`` to images ``(B, C, H, W)``."""
        return self.output_activation(self.decoder(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The deterministic reconstruction ``decode(encode(x))``."""
        return self.decode(self.encode(x))

    def objective(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named loss terms for a batch; ``loss`` is the one minimised."""
        raise NotImplementedError

    # ---- Lightning ---------------------------------------------------------------------------
    def _step(self, batch: Any, stage: str) -> torch.Tensor:
        x = batch[0]
        terms = self.objective(x)
        options = {"batch_size": x.shape[0], "sync_dist": stage != "train"}
        loss = terms.pop("loss")
        self.log(f"{stage}/loss", loss, prog_bar=True, **options)
        self.log_dict({f"{stage}/{name}": value for name, value in terms.items()}, **options)
        if stage in self.psnr:
            self.psnr[stage].update(self(x).clamp(0, 1), x)
            self.log(f"{stage}/psnr", self.psnr[stage], batch_size=x.shape[0])
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        # A schedule that needs the run's length (OneCycleLR's total_steps, CosineAnnealingLR's
        # T_max) and was not given one gets it from the trainer, in optimizer steps.
        given = getattr(self.scheduler_factory, "keywords", {})
        takes = inspect.signature(self.scheduler_factory).parameters
        kwargs = {
            name: int(self.trainer.estimated_stepping_batches)
            for name in RUN_LENGTH_ARGUMENTS
            if name in takes and given.get(name) is None
        }
        scheduler = self.scheduler_factory(optimizer=optimizer, **kwargs)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
