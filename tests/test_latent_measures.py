"""The latent measures of a run: which apply to which data, the ``measures:`` switch and its
checks, and a tiny run with a held-out class writing them into ``metrics.json`` (and on real
digits, probes well above chance)."""

import json
import math

import pytest
import torch

from ae_lab.errors import UserError
from ae_lab.latent.measures import Measures
from ae_lab.run.checks import check_config
from ae_lab.run.evaluate import latent_metrics
from ae_lab.run.train import run
from tests.conftest import TINY_RUN

PROBES = {"test/probe_linear", "test/probe_linear_550", "test/probe_knn"}
ANOMALY = {"test/anomaly_auroc", "test/anomaly_auroc_nll"}


class Identity(torch.nn.Module):
    """Codes are the images' pixels; reconstructions are the images."""

    latent_dim = 4

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def encode(self, x):
        return self.w * x.flatten(1)

    def reconstruct(self, x):
        return self.w * x


class Blobs:
    """Four classes, each a bright pixel of its own: separable codes."""

    image_shape = (1, 2, 2)
    class_names = ("a", "b", "c", "d")

    def __init__(self, holdout=None, labelled=True):
        self.holdout_class = holdout
        if not labelled:
            self.class_names = ()

    def split_size(self, split):
        return 200

    def sample_batch(self, n, split, seed):
        generator = torch.Generator().manual_seed(seed + (split == "test"))
        labels = torch.arange(n) % 4
        images = 0.1 * torch.rand(n, 1, 2, 2, generator=generator)
        images.view(n, 4)[torch.arange(n), labels] = 1.0
        if split != "test" and self.holdout_class is not None:
            labels[labels == self.holdout_class] = (self.holdout_class + 1) % 4
        return images, labels


def test_probes_on_labelled_data_and_anomaly_scores_with_a_held_out_class():
    probes = Measures(probe_labels=40)(Identity(), Blobs())
    assert probes == {"test/probe_linear": 1.0, "test/probe_linear_40": 1.0, "test/probe_knn": 1.0}
    held = Measures()(Identity(), Blobs(holdout=2))
    assert set(held) == {"test/probe_linear", "test/probe_linear_550", "test/probe_knn",
                         "test/anomaly_auroc"}  # fmt: skip
    assert Measures()(Identity(), Blobs(labelled=False)) == {}


def test_each_measure_can_be_switched_off():
    data = Blobs(holdout=2)
    assert set(Measures(probes=False)(Identity(), data)) == {"test/anomaly_auroc"}
    assert set(Measures(anomaly=False)(Identity(), data)) == {
        "test/probe_linear", "test/probe_linear_550", "test/probe_knn"
    }  # fmt: skip
    assert Measures(probes=False, anomaly=False)(Identity(), data) == {}


def test_the_measures_settings_are_built_from_the_config(compose):
    cfg = compose(["measures.probes=false", "measures.knn_k=3"])
    assert set(latent_metrics(cfg.measures, Identity(), Blobs(holdout=1), seed=0)) == {
        "test/anomaly_auroc"
    }
    # a run saved before the settings existed gets their defaults
    assert set(latent_metrics(None, Identity(), Blobs(), seed=0)) == PROBES


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("measures.knn_k=0", "measures.knn_k=0: must be >= 1 and <= 1000"),
        ("measures.probe_labels=1", "measures.probe_labels=1: must be >= 2 and <= 60000"),
        ("measures.probes=maybe", "measures.probes='maybe': must be true or false"),
        ("+measures.k=3", "measures.k: ae_lab.latent.measures.Measures takes no argument 'k'"),
    ],
)
def test_bad_measure_settings_are_refused_before_training(compose, override, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        check_config(compose([override]))


def test_a_run_with_a_held_out_class_writes_the_measures(compose, tmp_path, mnist_root):
    cfg = compose(["model=vae", f"data.root={mnist_root}", "data.holdout_class=3",
                   "++model.nll_samples=4", *TINY_RUN])  # fmt: skip
    returned = run(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics == returned and set(metrics) >= PROBES | ANOMALY
    for key in PROBES | ANOMALY:
        assert 0 <= metrics[key] <= 1 and math.isfinite(metrics[key]), key


@pytest.mark.slow
def test_codes_of_real_digits_are_probed_well_above_chance(compose, tmp_path, real_mnist):
    """An epoch on real MNIST without the 3s: nine seen classes (chance about 0.11) are read from
    the codes, and the 3s stand out by their reconstruction error."""
    cfg = compose(["model=ae", "model.latent_dim=16", f"data.root={real_mnist}",
                   "data.holdout_class=3", "trainer.max_epochs=1",
                   "trainer.enable_progress_bar=false", "callbacks=none"])  # fmt: skip
    metrics = run(cfg)
    shown = {k: round(v, 3) for k, v in metrics.items() if k in PROBES | ANOMALY}
    assert metrics["test/probe_linear"] > 0.5 and metrics["test/probe_knn"] > 0.5, shown
    assert 0.3 < metrics["test/probe_linear_550"] <= metrics["test/probe_linear"] + 0.02, shown
    assert metrics["test/anomaly_auroc"] > 0.5, shown
    assert "test/anomaly_auroc_nll" not in metrics  # an autoencoder has no likelihood
