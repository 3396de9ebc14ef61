"""PCA beside the autoencoders: the pure functions (fit, reconstruction error, principal angles)
against known subspaces, and ``test/pca_recon``/``test/subspace_angle`` in a tiny run's
metrics.json against an independent computation."""

import json
import math

import pytest
import torch

from ae_lab.data import MNISTDataModule
from ae_lab.models.pca import (
    decoder_directions,
    fit_pca,
    pca_reconstruction_error,
    principal_angles,
)
from ae_lab.run.build import build_model
from ae_lab.run.evaluate import pca_metrics
from ae_lab.run.train import run
from tests.conftest import TINY_RUN


def random_basis(d: int, k: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(d, k, generator=generator, dtype=torch.float64))[0]


def test_principal_angles_of_a_subspace_with_itself_and_an_orthogonal_one():
    basis = random_basis(20, 6)
    mixed = basis @ torch.randn(6, 6, dtype=torch.float64)  # the same span, another basis
    assert principal_angles(basis, mixed) == pytest.approx(0, abs=1e-6)
    eye = torch.eye(10)
    assert principal_angles(eye[:, :3], eye[:, 3:6]) == pytest.approx(90)
    # one shared direction, one orthogonal: the largest angle is 90
    assert principal_angles(eye[:, [0, 1]], eye[:, [0, 2]]) == pytest.approx(90)
    # a known small angle is exact (arccos of a cosine near 1 would not be)
    tilted = torch.stack([eye[:, 0], math.cos(1e-5) * eye[:, 1] + math.sin(1e-5) * eye[:, 2]], 1)
    assert principal_angles(eye[:, :2], tilted) == pytest.approx(math.degrees(1e-5), rel=1e-6)


def test_fit_pca_recovers_a_subspace_the_data_lies_in():
    d, k = 30, 4
    basis = random_basis(d, k, seed=1)
    codes = torch.randn(500, k, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x = (codes @ basis.T).float()
    mean, components = fit_pca(x, k, centered=False)
    assert components.shape == (d, k) and torch.allclose(mean, torch.zeros(d))
    assert torch.allclose(components.T @ components, torch.eye(k), atol=1e-5)
    assert principal_angles(components, basis) < 0.01
    assert pca_reconstruction_error(x, mean, components).max() < 1e-8
    # fewer components than the data's dimension: an error, the larger the fewer
    errors = [pca_reconstruction_error(x, *fit_pca(x, j, False)).mean() for j in (1, 2, 3)]
    assert errors[0] > errors[1] > errors[2] > 1e-3


def test_uncentered_and_centered_pca_differ_on_data_with_a_large_mean():
    generator = torch.Generator().manual_seed(3)
    offset = torch.zeros(10)
    offset[0] = 50.0  # a large mean along e0; the variance lies along e1
    x = offset + torch.randn(1000, 1, generator=generator) * torch.eye(10)[1]
    mean_c, centered = fit_pca(x, 1, centered=True)
    mean_u, uncentered = fit_pca(x, 1, centered=False)
    assert torch.allclose(mean_c, x.mean(0), atol=1e-4) and not mean_u.any()
    assert principal_angles(centered, torch.eye(10)[:, [1]]) < 0.1  # the direction of variance
    assert principal_angles(uncentered, torch.eye(10)[:, [0]]) < 1  # the direction of the mean
    assert principal_angles(centered, uncentered) > 80
    assert pca_reconstruction_error(x, mean_c, centered).mean() < 1e-6


def test_the_bernoulli_error_is_the_cross_entropy_of_the_clamped_reconstruction():
    x = torch.tensor([[0.0, 1.0, 1.0]])
    mean, components = torch.zeros(3), torch.eye(3)[:, :1]  # keeps pixel 0, zeroes the others
    error = pca_reconstruction_error(x, mean, components, "bernoulli")
    assert error.item() == pytest.approx(-math.log(1e-4) * 2 - math.log(1 - 1e-4), rel=1e-4)
    assert pca_reconstruction_error(x, mean, None, "gaussian").item() == 0.0


def independent_pca_error(train: torch.Tensor, test: torch.Tensor, k: int, centered: bool):
    """Test error of PCA fitted by an SVD of the training data (not fit_pca's eigh)."""
    train, test = train.flatten(1).double(), test.flatten(1).double()
    mean = train.mean(0) if centered else torch.zeros(train.shape[1], dtype=torch.float64)
    v = torch.linalg.svd(train - mean, full_matrices=False).Vh[:k].T
    recon = mean + (test - mean) @ v @ v.T
    return float((test - recon).square().sum(1).mean()), v


@pytest.mark.parametrize(("model", "k", "centered"), [("linear_ae", 6, False), ("ae", 8, True)])
def test_metrics_json_holds_pca_beside_the_model(compose, tmp_path, mnist_root, model, k, centered):
    quick = [o for o in TINY_RUN if not o.startswith("callbacks.")]  # no figures to size
    overrides = [f"model={model}", f"model.latent_dim={k}", f"data.root={mnist_root}",
                 "data.download=false", "callbacks=none", *quick]  # fmt: skip
    run(compose(overrides))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    data = MNISTDataModule(str(mnist_root), seed=0)
    train, _ = data.sample_batch(None, "train")
    test, _ = data.sample_batch(None, "test")
    expected, v = independent_pca_error(train, test, k, centered)
    assert metrics["test/pca_recon"] == pytest.approx(expected, rel=1e-4)
    if model == "linear_ae":  # its decoder's span against the uncentered principal subspace
        from ae_lab.models import Autoencoder

        trained = Autoencoder.load_from_checkpoint(tmp_path / "run/checkpoints/last.ckpt")
        q = torch.linalg.qr(trained.decoder.mlp.linears[0].weight.detach().double())[0]
        cosine = torch.linalg.svdvals(q.T @ v).min().clamp(max=1)
        assert metrics["test/subspace_angle"] == pytest.approx(
            math.degrees(math.acos(cosine)), abs=1e-3
        )
    else:
        assert "test/subspace_angle" not in metrics


def linear_ae(compose, mnist_root, k: int | None):
    latent = [f"model.latent_dim={k}"] if k is not None else []
    cfg = compose(["model=linear_ae", *latent, f"data.root={mnist_root}", "data.download=false"])
    data = MNISTDataModule(str(mnist_root), seed=0)
    return build_model(cfg.model, data.image_shape), data


def test_a_linear_ae_set_to_the_principal_directions_has_no_angle_and_pca_s_error(
    compose, mnist_root
):
    model, data = linear_ae(compose, mnist_root, k=5)
    train, _ = data.sample_batch(None, "train")
    _, components = fit_pca(train.flatten(1), 5, centered=False)
    with torch.no_grad():
        model.decoder.mlp.linears[0].weight.copy_(components @ torch.randn(5, 5))  # any basis
        model.encoder.mlp.linears[0].weight.copy_(torch.linalg.pinv(decoder_directions(model)))
    metrics = pca_metrics(model, data)
    assert metrics["test/subspace_angle"] == pytest.approx(0, abs=0.01)
    test, _ = data.sample_batch(None, "test")
    with torch.no_grad():
        own = (model.reconstruct(test) - test).square().flatten(1).sum(1).mean()
    assert metrics["test/pca_recon"] == pytest.approx(float(own), rel=1e-3)


def test_as_many_components_as_pixels_reconstruct_perfectly(compose, mnist_root):
    model, data = linear_ae(compose, mnist_root, k=None)  # as wide as the input: no bottleneck
    assert pca_metrics(model, data) == {"test/pca_recon": 0.0}
