"""A density fitted to codes: a mixture's samples land in every cluster of the codes (where one
Gaussian's fill the gap between them), a full covariance is recovered and sampled from, every
covariance type gives full matrices, fits and draws are seeded, and bad settings are named."""

import math

import pytest
import torch

from ae_lab.latent.density import COVARIANCES, affordable, fit_density


def two_clusters(n: int = 2000, seed: int = 0) -> torch.Tensor:
    """3-D codes in two tight clusters, centred at x = -5 and x = +5 (std 0.5)."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[-5.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    which = torch.arange(n) % 2
    return centres[which] + 0.5 * torch.randn(n, 3, generator=generator)


def test_mixture_samples_land_in_both_clusters_and_one_gaussians_fill_the_gap():
    codes = two_clusters()
    mixture = fit_density(codes, "gmm", components=2, covariance_type="full", seed=0)
    drawn = mixture.sample(1000, seed=1)
    assert drawn.shape == (1000, 3) and drawn.dtype == torch.float32
    left, right = (drawn[:, 0] < -2).float().mean(), (drawn[:, 0] > 2).float().mean()
    assert 0.4 < left < 0.6 and 0.4 < right < 0.6 and left + right == 1  # none in the gap
    assert sorted(mixture.means[:, 0].tolist()) == pytest.approx([-5, 5], abs=0.1)
    # one Gaussian spans both clusters: about a third of its samples fall between them
    single = fit_density(codes, "gaussian", components=2, seed=0)  # components: gmm only
    assert single.components == 1
    between = (single.sample(1000, seed=1)[:, 0].abs() < 2).float().mean()
    assert between > 0.2


def test_a_full_covariance_is_recovered_and_sampled_from():
    covariance = torch.tensor(
        [[2.0, 0.8, -0.3], [0.8, 1.0, 0.2], [-0.3, 0.2, 0.5]], dtype=torch.float64
    )
    mean = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    codes = (
        mean
        + torch.randn(20_000, 3, generator=generator, dtype=torch.float64)
        @ torch.linalg.cholesky(covariance).T
    )
    fitted = fit_density(codes.float(), "gaussian", covariance_type="full")
    assert fitted.means.shape == (1, 3) and fitted.covariances.shape == (1, 3, 3)
    torch.testing.assert_close(fitted.means[0], mean, atol=0.05, rtol=0)
    torch.testing.assert_close(fitted.covariances[0], covariance, atol=0.06, rtol=0)
    drawn = fitted.sample(20_000, seed=3).double()
    torch.testing.assert_close(torch.cov(drawn.T), covariance, atol=0.08, rtol=0)
    # a diagonal fit of the same codes keeps the variances and drops the correlations
    diagonal = fit_density(codes, "gaussian", covariance_type="diag").covariances[0]
    torch.testing.assert_close(diagonal.diagonal(), covariance.diagonal(), atol=0.06, rtol=0)
    assert (diagonal - torch.diag(diagonal.diagonal())).abs().max() == 0


@pytest.mark.parametrize("covariance_type", COVARIANCES)
def test_every_covariance_type_gives_positive_definite_full_matrices(covariance_type):
    fitted = fit_density(two_clusters(400), "gmm", 3, covariance_type, seed=0)
    assert fitted.covariances.shape == (3, 3, 3) and fitted.weights.sum() == pytest.approx(1)
    assert (torch.linalg.eigvalsh(fitted.covariances) > 0).all()
    assert fitted.sample(50).shape == (50, 3)


def test_fits_and_draws_are_seeded():
    codes = two_clusters(600)
    one, two = fit_density(codes, components=4, seed=7), fit_density(codes, components=4, seed=7)
    assert torch.equal(one.means, two.means)
    assert torch.equal(one.sample(20, seed=1), two.sample(20, seed=1))
    assert not torch.equal(one.sample(20, seed=1), one.sample(20, seed=2))


def test_codes_with_a_constant_unit_at_any_scale_still_fit():
    """A unit that never varies (a dead ReLU) makes the covariance singular: the regularisation,
    relative to the codes' spread, keeps it positive definite for tiny and huge codes alike."""
    for scale in (1e-4, 1e4):
        codes = two_clusters(500) * scale
        codes[:, 2] = 0.0
        fitted = fit_density(codes, "gmm", 2, "full")
        assert torch.isfinite(fitted.sample(10)).all()


@pytest.mark.parametrize(
    "codes, settings, says",
    [
        (
            two_clusters(3),
            {"components": 5},
            "a density of 5 components needs at least 5 codes, got 3",
        ),
        (two_clusters(1), {"kind": "gaussian"}, "needs at least 2 codes, got 1"),
        (two_clusters(10), {"kind": "kde"}, "density kind must be one of gaussian, gmm, got 'kde'"),
        (two_clusters(10), {"covariance_type": "banana"}, "covariance must be one of full, diag"),
        (two_clusters(10), {"components": 0}, "components must be an integer >= 1, got 0"),
        (two_clusters(10), {"max_iter": 0}, "max_iter must be >= 1"),
        (torch.zeros(10), {}, "codes must be shaped (N, latent), got (10,)"),
        (torch.full((10, 2), math.nan), {}, "the codes hold NaN or infinite values"),
    ],
)
def test_bad_settings_and_too_few_codes_are_named(codes, settings, says):
    with pytest.raises(ValueError) as error:
        fit_density(codes, **settings)
    assert says in str(error.value)


def test_a_wide_latent_is_fitted_on_fewer_codes():
    assert affordable(32, 10, "full") >= 10_000  # a narrow latent: every code asked for
    wide = affordable(256, 10, "full")
    assert 256 <= wide < 1000 and affordable(256, 10, "diag") > 100 * wide
    assert affordable(256, 10, "tied") == wide and affordable(256, 1, "full") >= 9 * wide
    assert affordable(784, 10, "full") == 784  # as many codes as the factorisations cost
