"""Anomaly detection with a class held out of training (``data.holdout_class=K``): how well a score
per test image tells class K, never seen in training, from the classes the model learned.

* ``test/anomaly_auroc``: the score is the summed squared error of the deterministic
  reconstruction, ``||model.reconstruct(x) - x||^2`` (``test/recon``'s units for a Gaussian
  likelihood); one score for every model, so the AUROCs of a sweep compare.
* ``test/anomaly_auroc_nll`` (models with a prior): the score is ``-log p(x)``, importance-sampled
  from the posterior with :data:`NLL_SAMPLES` draws (:mod:`ae_lab.models.evaluation`; the same
  draws' negative ELBO is a looser bound), seeded.

Both are the AUROC of the held-out class (positive) against the rest of the test set: 1 when
every image of class K scores above every other image, 0.5 for a score blind to it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torchmetrics.functional.classification import binary_auroc

from ae_lab.latent.codes import MAX_IMAGES, sample_images
from ae_lab.models.evaluation import importance_sampled_log_likelihood
from ae_lab.models.losses import reconstruction_error_per_example

log = logging.getLogger(__name__)

#: posterior draws per image for the NLL score (the test metric ``test/nll`` uses the model's own
#: ``model.nll_samples``; a ranking needs fewer)
NLL_SAMPLES = 16
#: test images scored at once
CHUNK = 256


def auroc(scores: torch.Tensor, anomalous: torch.Tensor) -> float:
    """The area under the ROC curve of ``scores`` (higher: more anomalous) for the boolean
    ``anomalous``: 1 when every anomaly scores above every other image, 0 when below, about 0.5
    for a score that ignores them; ties count half.

    torchmetrics' binary AUROC, on the scores scaled into [0, 1] first: it reads scores outside
    [0, 1] as logits, and a sigmoid in float32 would make every large error the same 1.0."""
    scores = scores.double()
    low, high = scores.min(), scores.max()
    scaled = (scores - low) / (high - low) if high > low else torch.zeros_like(scores)
    return float(binary_auroc(scaled, anomalous.long()))


def scored_images(data: Any, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The test images and labels the scores are computed on: every test image, or a seeded
    sample within :mod:`~ae_lab.latent.codes`'s limits (as the codes are)."""
    return sample_images(data, "test", MAX_IMAGES, seed)


def per_image(
    model: Any, images: torch.Tensor, score: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """``score(x)`` ``(B,)`` over ``images`` a :data:`CHUNK` at a time, on the model's device,
    in eval mode without autograd (the mode restored after); float64 on the CPU."""
    was_training = model.training
    model.eval()
    parameter = next(iter(model.parameters()), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None else torch.float32
    try:
        with torch.no_grad():
            parts = [score(x.to(device=device, dtype=dtype)).double().cpu()
                     for x in images.split(CHUNK)]  # fmt: skip
    finally:
        model.train(was_training)
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def reconstruction_scores(model: Any, images: torch.Tensor) -> torch.Tensor:
    """``||model.reconstruct(x) - x||^2`` per image."""

    def squared_error(x: torch.Tensor) -> torch.Tensor:
        return reconstruction_error_per_example(
            model.reconstruct(x), x, "gaussian", activation=lambda t: t
        )

    return per_image(model, images, squared_error)


def nll_scores(
    model: Any, images: torch.Tensor, samples: int = NLL_SAMPLES, seed: int = 0
) -> torch.Tensor:
    """The importance-sampled ``-log p(x)`` per image (a model with a prior), from ``samples``
    posterior draws each; seeded, with the caller's random state left as it was."""
    parameter = next(iter(model.parameters()), None)
    cuda = parameter is not None and parameter.device.type == "cuda"
    with torch.random.fork_rng(devices=[parameter.device] if cuda else []):
        torch.manual_seed(seed)
        return per_image(
            model, images, lambda x: -importance_sampled_log_likelihood(model, x, samples)[0]
        )


def anomaly_metrics(model: Any, data: Any, holdout: int, seed: int = 0) -> dict[str, float]:
    """``test/anomaly_auroc`` and, for a model with a prior, ``test/anomaly_auroc_nll``, with
    class ``holdout`` as the anomaly; nothing (and a warning) when the test images are all of that
    class or none of them is."""
    images, labels = scored_images(data, seed)
    anomalous = labels == holdout
    if anomalous.all() or not anomalous.any():
        log.warning(
            "data.holdout_class=%d: %d of the %d test images are of that class; no anomaly AUROC",
            holdout, int(anomalous.sum()), len(labels),
        )  # fmt: skip
        return {}
    metrics = {"test/anomaly_auroc": auroc(reconstruction_scores(model, images), anomalous)}
    if getattr(getattr(model, "supports", None), "prior", False):
        metrics["test/anomaly_auroc_nll"] = auroc(nll_scores(model, images, seed=seed), anomalous)
    return metrics
