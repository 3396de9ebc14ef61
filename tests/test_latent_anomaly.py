"""Anomaly scores of a held-out class: the AUROC's extremes and chance, the reconstruction error
per image, the seeded NLL, and the metrics of a model that fails only on the held-out class."""

import pytest
import torch

from ae_lab.latent.anomaly import anomaly_metrics, auroc, nll_scores, reconstruction_scores
from ae_lab.models import Autoencoder


def test_a_perfect_score_has_auroc_1_a_reversed_one_0_a_blind_one_one_half():
    anomalous = torch.tensor([False] * 60 + [True] * 40)
    perfect = anomalous.double() * 5 + torch.rand(100)  # every anomaly above every normal image
    # (torchmetrics computes in float32)
    assert auroc(perfect, anomalous) == pytest.approx(1.0, abs=1e-6)
    assert auroc(-perfect, anomalous) == pytest.approx(0.0, abs=1e-6)
    assert auroc(torch.full((100,), 3.0), anomalous) == 0.5  # all tied: ties count half
    generator = torch.Generator().manual_seed(0)
    labels = torch.rand(20_000, generator=generator) < 0.1
    blind = torch.rand(20_000, generator=generator)
    assert auroc(blind, labels) == pytest.approx(0.5, abs=0.02)


def test_large_errors_are_ranked_not_squashed():
    """Summed errors are in the hundreds: read as logits by a sigmoid in float32 they would all be
    1.0 and tie."""
    anomalous = torch.tensor([False, False, True, True])
    errors = torch.tensor([300.0, 310.0, 320.0, 330.0])
    assert auroc(errors, anomalous) == 1.0
    # 3 of the 4 (anomaly, normal) pairs in order
    assert auroc(torch.tensor([300.0, 315.0, 310.0, 320.0]), anomalous) == 0.75


class FirstPixelBlind(torch.nn.Module):
    """Reconstructs every pixel but the first, which it sets to 0; class 3 alone lights it."""

    latent_dim = 4

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def reconstruct(self, x):
        assert not self.training and not torch.is_grad_enabled()
        out = self.scale * x.clone()
        out[:, 0, 0, 0] = 0
        return out


class Data:
    image_shape = (1, 2, 2)
    class_names = tuple("0123")

    def __init__(self, holdout=3):
        generator = torch.Generator().manual_seed(0)
        self.labels = torch.arange(40) % 4
        self.images = torch.rand(40, 1, 2, 2, generator=generator) * 0.5
        self.images[:, 0, 0, 0] = (self.labels == 3).float()  # the first pixel: class 3's mark
        self.holdout_class = holdout

    def split_size(self, split):
        return len(self.images)

    def sample_batch(self, n, split, seed):
        order = torch.randperm(len(self.images), generator=torch.Generator().manual_seed(seed))
        return self.images[order[:n]], self.labels[order[:n]]


def test_the_reconstruction_score_is_the_summed_squared_error_per_image():
    model, data = FirstPixelBlind().train(), Data()
    scores = reconstruction_scores(model, data.images)
    assert scores.dtype == torch.float64 and scores.shape == (40,)
    torch.testing.assert_close(scores.float(), data.images[:, 0, 0, 0].square())
    assert model.training  # the mode it came in


def test_a_model_blind_to_the_held_out_class_detects_it_perfectly():
    metrics = anomaly_metrics(FirstPixelBlind(), Data(), 3)
    assert metrics == {"test/anomaly_auroc": pytest.approx(1.0, abs=1e-6)}
    # as the anomaly, another class scores below the rest (class 3's errors are the large ones)
    assert anomaly_metrics(FirstPixelBlind(), Data(), 0)["test/anomaly_auroc"] < 0.5


def test_no_auroc_when_the_test_set_has_none_or_only_the_class(caplog):
    assert anomaly_metrics(FirstPixelBlind(), Data(), 7) == {}
    assert "data.holdout_class=7: 0 of the 40 test images" in caplog.text


def vae() -> Autoencoder:
    torch.manual_seed(0)
    return Autoencoder(
        input_shape=(1, 4, 4),
        net={"_target_": "ae_lab.nets.mlp_autoencoder", "_partial_": True, "hidden_dims": [8]},
        optimizer={"_target_": "torch.optim.Adam", "_partial_": True},
        latent_dim=2, bottleneck="gaussian", beta=1.0,
    )  # fmt: skip


def test_the_nll_score_is_seeded_and_leaves_the_random_state_alone():
    model, images = vae(), torch.rand(10, 1, 4, 4)
    torch.manual_seed(123)
    first = nll_scores(model, images, samples=4, seed=1)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(nll_scores(model, images, samples=4, seed=1), first)
    assert torch.equal(torch.rand(3), after)  # the caller's draws are as if it never ran
    assert not torch.equal(nll_scores(model, images, samples=4, seed=2), first)
    assert first.shape == (10,) and bool((first > 0).all())  # -log p(x) of a Gaussian decoder


def test_a_model_with_a_prior_also_ranks_by_its_nll():
    data = Data()
    data.images = torch.rand(40, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    data.image_shape = (1, 4, 4)
    data.images[data.labels == 3] += 3  # far outside what the decoder's sigmoid reaches
    metrics = anomaly_metrics(vae(), data, 3)
    assert set(metrics) == {"test/anomaly_auroc", "test/anomaly_auroc_nll"}
    assert metrics["test/anomaly_auroc"] == 1.0 and metrics["test/anomaly_auroc_nll"] == 1.0
