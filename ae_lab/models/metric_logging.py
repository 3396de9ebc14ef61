"""What the model logs beside its loss terms, and when: the steps whose values Lightning writes,
the clean images' reconstructions (PSNR, SSIM, and a denoising model's error), a VAE's likelihood
terms and a quantised model's codebook usage. The model (:class:`~ae_lab.models.Autoencoder`) calls these from its
Lightning hooks; they log through its ``self.log`` and read its ``metrics``.
"""

from __future__ import annotations

from typing import Any

import torch

from ae_lab.models.evaluation import importance_sampled_log_likelihood
from ae_lab.models.losses import reconstruction_error_per_example


def writes_step_values(trainer: Any, global_step: int) -> bool:
    """Whether Lightning writes this step's logged values: every ``log_every_n_steps``
    optimizer steps, on stop, in a fast dev run. Only then are they logged: a ``self.log``
    call costs as much written or not (benchmarks/README.md)."""
    every = max(1, trainer.log_every_n_steps)
    return (global_step + 1) % every == 0 or trainer.should_stop or bool(trainer.fast_dev_run)


def likelihood_terms(model: Any, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """``nll`` (importance-sampled ``-log p(x)``) and ``elbo`` from the same samples, so
    ``nll <= -elbo`` image by image (Jensen); and the active units' update."""
    log_px, elbo = importance_sampled_log_likelihood(model, x, model.nll_samples)
    active = model.metrics["test_active_units"]
    active.update(model.encode(x))
    model.log("test/active_units", active, batch_size=x.shape[0])
    return {"nll": -log_px.mean(), "elbo": elbo.mean()}


def log_clean_reconstruction(model: Any, x: torch.Tensor, stage: str) -> dict[str, torch.Tensor]:
    """PSNR and SSIM of the deterministic reconstruction of the clean ``x``, as epoch metrics;
    for a model with a corruption, also that reconstruction's error, returned as ``recon_clean``
    (the objective's ``recon`` is of the corrupted image's reconstruction)."""
    logits = model.decoder(model.encode(x))
    reconstruction = model.output_activation(logits).float().clamp(0, 1)
    for name in ("psnr", "ssim"):
        metric = model.metrics[f"{stage}_{name}"]
        metric.update(reconstruction, x)
        model.log(f"{stage}/{name}", metric, batch_size=x.shape[0])
    if model.corruption is None:
        return {}
    error = reconstruction_error_per_example(logits, x, model.likelihood, model.output_activation)
    return {"recon_clean": error.mean()}


def log_codebook_usage(model: Any, stage: str) -> None:
    """``<stage>/vq_perplexity`` and ``<stage>/codebook_usage`` over the epoch's code indices (a
    quantised model, once per epoch); the counts are summed over processes, then reset."""
    name = f"{stage}_codebook"
    if name not in model.metrics or not model.metrics[name].update_called:
        return
    metric = model.metrics[name]
    values = metric.compute()
    metric.reset()
    # (the same on every process: the sync only keeps Lightning from warning)
    model.log_dict({f"{stage}/{name}": value for name, value in values.items()}, sync_dist=True)
