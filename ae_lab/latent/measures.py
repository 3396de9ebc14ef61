"""The latent-space measures of a set of weights, merged into ``metrics.json`` and HParams at the
end of a run and by ``eval.py`` (docs/eval.md). The run's ``measures:`` settings
(conf/train.yaml) build a :class:`Measures`; calling it on a model and its datamodule gives:

* on labelled data, with ``probes``: ``test/probe_linear`` (a logistic regression on the frozen
  codes, every training label), ``test/probe_linear_<probe_labels>`` (the same from a seeded
  sample of ``probe_labels`` labels: ae_bakeoff's 550) and ``test/probe_knn`` (a ``knn_k``-nearest-
  neighbour vote), each a test accuracy in [0, 1] (:mod:`.probes`);
* with ``data.holdout_class`` and ``anomaly``: ``test/anomaly_auroc`` and, for a model with a
  prior, ``test/anomaly_auroc_nll`` (:mod:`.anomaly`).

The codes are ``model.encode``'s (a VAE's posterior mean) of the training and test splits
(:func:`~ae_lab.latent.codes.split_codes`). Every choice is seeded: the same weights and seed give
the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ae_lab.latent.anomaly import anomaly_metrics
from ae_lab.latent.codes import split_codes
from ae_lab.latent.probes import knn_probe, linear_probe


@dataclass(frozen=True)
class Measures:
    """Args:
    probes: the linear and k-NN probes (labelled datasets only).
    probe_labels: training labels of the small linear probe, a seeded random sample.
    knn_k: neighbours that vote in the k-NN probe.
    anomaly: the anomaly AUROCs, when the data holds a class out (``data.holdout_class``).
    """

    probes: bool = True
    probe_labels: int = 550
    knn_k: int = 5
    anomaly: bool = True

    def __call__(self, model: Any, data: Any, seed: int = 0) -> dict[str, float]:
        """The measures that apply to ``model`` on ``data`` (``{}`` when none does)."""
        metrics: dict[str, float | None] = {}
        if self.probes and getattr(data, "class_names", ()):
            metrics.update(self.probe_metrics(model, data, seed))
        holdout = getattr(data, "holdout_class", None)
        if self.anomaly and holdout is not None:
            metrics.update(anomaly_metrics(model, data, holdout, seed))
        return {key: value for key, value in metrics.items() if value is not None}

    def probe_metrics(self, model: Any, data: Any, seed: int = 0) -> dict[str, float | None]:
        """The probes' test accuracies, trained on the training split's codes."""
        train = split_codes(model, data, "train", seed=seed)
        test = split_codes(model, data, "test", seed=seed)
        parameter = next(iter(model.parameters()), None)
        device = parameter.device if parameter is not None else "cpu"
        return {
            "test/probe_linear": linear_probe(train, test, seed),
            f"test/probe_linear_{self.probe_labels}": linear_probe(
                train, test, seed, count=self.probe_labels
            ),
            "test/probe_knn": knn_probe(train, test, self.knn_k, device),
        }
