"""The importance-sampled likelihood against a model whose likelihood is known exactly, and Burda's
active-units count against known variances."""

import math

import pytest
import torch

from ae_lab.models import Autoencoder
from ae_lab.models.evaluation import ActiveUnits, importance_sampled_log_likelihood

SHAPE = (1, 2, 3)  # six "pixels"
LATENT = 2
SIGMA2 = 0.5  # the Gaussian likelihood's variance per pixel (see ae_lab.models.losses)


def linear_gaussian_vae() -> Autoencoder:
    """p(z) = N(0, I), p(x|z) = N(W z + b, I/2): a linear decoder with the identity output.

    W has orthogonal columns, so the exact posterior is a diagonal Gaussian: the encoder can be
    set to it exactly (``exact_posterior``).
    """
    torch.manual_seed(0)
    model = Autoencoder(
        input_shape=SHAPE,
        net={"_target_": "ae_lab.nets.mlp_autoencoder", "_partial_": True, "hidden_dims": [],
             "activation": "identity"},
        optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1},
        latent_dim=LATENT, bottleneck="gaussian", output_activation="identity",
    ).double()  # fmt: skip
    q, _ = torch.linalg.qr(torch.randn(6, LATENT, dtype=torch.float64))
    with torch.no_grad():
        model.decoder.mlp.linears[0].weight.copy_(q * torch.tensor([1.5, 0.7]))
        model.decoder.mlp.linears[0].bias.copy_(torch.randn(6))
    return model


def exact_log_likelihood(model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
    layer = model.decoder.mlp.linears[0]
    cov = layer.weight @ layer.weight.T + SIGMA2 * torch.eye(6, dtype=torch.float64)
    return torch.distributions.MultivariateNormal(layer.bias, cov).log_prob(x.flatten(1))


def set_exact_posterior(model: Autoencoder) -> None:
    """q(z|x) = N(S W^T (x - b) / s2, S), S = (I + W^T W / s2)^-1, diagonal here."""
    layer = model.decoder.mlp.linears[0]
    w, b = layer.weight, layer.bias
    s = torch.linalg.inv(torch.eye(LATENT, dtype=torch.float64) + w.T @ w / SIGMA2)
    gain = s @ w.T / SIGMA2  # (latent, pixels)
    encoder = model.encoder.mlp.linears[0]
    with torch.no_grad():
        encoder.weight.zero_(), encoder.bias.zero_()
        encoder.weight[:LATENT] = gain
        encoder.bias[:LATENT] = -gain @ b
        encoder.bias[LATENT:] = torch.log(torch.diagonal(s))


def data(model: Autoencoder, n: int = 64) -> torch.Tensor:
    torch.manual_seed(1)
    z = torch.randn(n, LATENT, dtype=torch.float64)
    mean = model.decoder(z)
    return mean + math.sqrt(SIGMA2) * torch.randn_like(mean)


def test_with_the_exact_posterior_every_sample_gives_the_exact_likelihood():
    model = linear_gaussian_vae()
    set_exact_posterior(model)
    x = data(model)
    with torch.no_grad():
        estimate, elbo = importance_sampled_log_likelihood(model, x, samples=3)
    torch.testing.assert_close(estimate, exact_log_likelihood(model, x))
    torch.testing.assert_close(elbo, estimate)  # q = p(z|x): the ELBO is tight


def test_the_estimate_converges_to_the_exact_likelihood_as_samples_grow():
    model = linear_gaussian_vae()  # its encoder is random: a poor proposal
    set_exact_posterior(model)
    with torch.no_grad():  # a proposal that is off: shifted means, wider variances
        model.encoder.mlp.linears[0].bias[:LATENT] += 0.6
        model.encoder.mlp.linears[0].bias[LATENT:] += 0.8
    x = data(model)
    exact = exact_log_likelihood(model, x)
    torch.manual_seed(2)
    gaps = {}
    with torch.no_grad():
        for samples in (1, 10, 100, 5000):
            estimate, elbo = importance_sampled_log_likelihood(model, x, samples, budget=1 << 12)
            gaps[samples] = float((exact - estimate).mean())
            assert (estimate >= elbo).all()  # never looser than the ELBO of the same samples
    assert gaps[1] > gaps[10] > abs(gaps[5000])  # the bias shrinks as samples grow
    assert abs(gaps[5000]) < 0.01 < gaps[1]


def test_chunking_does_not_change_the_estimate():
    model = linear_gaussian_vae()
    x = data(model, n=5)
    with torch.no_grad():
        torch.manual_seed(3)
        whole, _ = importance_sampled_log_likelihood(model, x, 40)
        torch.manual_seed(3)
        chunked, _ = importance_sampled_log_likelihood(model, x, 40, budget=5 * 6 * 7)
    torch.testing.assert_close(whole, chunked)


def test_active_units_follow_the_covariance_criterion():
    metric = ActiveUnits(latent_dim=3, threshold=0.01)
    torch.manual_seed(0)
    means = torch.randn(1000, 3) * torch.tensor([1.0, 0.05, 0.2])  # variances 1, 0.0025, 0.04
    for part in means.split(300):
        metric.update(part)
    torch.testing.assert_close(metric.variances().float(), means.var(0), rtol=1e-4, atol=1e-6)
    assert metric.compute().item() == 2


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_nll_is_at_most_minus_the_elbo_for_a_trained_shape(likelihood):
    torch.manual_seed(0)
    model = Autoencoder(
        input_shape=(1, 8, 8),
        net={"_target_": "ae_lab.nets.mlp_autoencoder", "_partial_": True, "hidden_dims": [16]},
        optimizer={"_target_": "torch.optim.Adam", "_partial_": True},
        latent_dim=3, bottleneck="gaussian", likelihood=likelihood,
    )  # fmt: skip
    x = (torch.rand(10, 1, 8, 8) > 0.5).float()
    with torch.no_grad():
        log_px, elbo = importance_sampled_log_likelihood(model, x, 50)
    assert (-log_px <= -elbo).all()
