"""The trivial solution made visible: ``W_dec W_enc`` of a linear autoencoder, and how close to the
identity it acts on the data."""

from __future__ import annotations

import math

import torch

from ae_lab.figures import drawing
from ae_lab.figures.base import CARD_WIDTH, FigureCallback, Rendered, evaluating


def identity_metrics(product: torch.Tensor, images: torch.Tensor) -> dict[str, float]:
    """How far ``product`` is from the identity, on data ``images`` ``(N, ...)``.

    * ``identity_error``: ``||(W - I) X||_F / ||X||_F`` over the images, the relative error of the
      reconstruction ``W x``. Directions the data never uses do not count.
    * ``diag_mean``: mean of ``W_ii`` over the pixels that vary in the data (a border pixel that is
      always 0 gives the model nothing to learn).
    * ``offdiag_abs_mean``: mean ``|W_ij|``, ``i != j``.
    """
    x = images.flatten(1).to(product)
    error = torch.linalg.norm(x @ (product - torch.eye(len(product), device=product.device)).T)
    varying = x.std(dim=0) > 0
    diag = torch.diagonal(product)
    off = product.abs().sum() - diag.abs().sum()
    n = len(product)
    return {
        "identity_error": float(error / torch.linalg.norm(x)),
        "diag_mean": float(diag[varying].mean()) if varying.any() else math.nan,
        "offdiag_abs_mean": float(off / (n * n - n)) if n > 1 else 0.0,
    }


class WeightProduct(FigureCallback):
    """Heatmap of ``W2·W1`` (raw and clipped at 0) and the scalars of :func:`identity_metrics`,
    logged as ``val/…`` after each validation epoch and ``test/…`` after testing (all images)."""

    name = "weight_product"
    needs = "linear_map"

    @staticmethod
    def metrics(model, data, split: str) -> dict[str, float]:
        images, _ = data.sample_batch(None, split=split)
        with evaluating(model):
            return identity_metrics(model.weight_product(), images.to(model.device))

    def _log_metrics(self, trainer, pl_module, split: str) -> None:
        for key, value in self.metrics(pl_module, trainer.datamodule, split).items():
            pl_module.log(f"{split}/{key}", value)  # every rank logs the same

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.applies_to(pl_module):  # in the sanity check too: a monitor may name them
            self._log_metrics(trainer, pl_module, "val")
        super().on_validation_epoch_end(trainer, pl_module)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        if self.applies_to(pl_module):
            self._log_metrics(trainer, pl_module, "test")

    def render(self, model, data) -> Rendered:
        metrics = self.metrics(model, data, "val")
        self._product = model.weight_product().float().cpu().numpy()
        self._title = (
            f"identity error {metrics['identity_error']:.4f}, "
            f"mean diagonal {metrics['diag_mean']:.3f}, "
            f"mean |off-diagonal| {metrics['offdiag_abs_mean']:.2e}"
        )
        return {"weight_product": drawing.weight_product_figure(self._product, self._title)}

    def card_view(self, key, image):
        """The heatmap drawn again to fit a card, pooled so the diagonal stays visible (shrinking
        the full-size image would average the one-pixel diagonal away)."""
        return drawing.weight_product_figure(self._product, self._title, max_width=CARD_WIDTH)
