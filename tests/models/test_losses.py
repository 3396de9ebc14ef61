import math

import pytest
import torch
import torch.nn.functional as F

from ae_lab.models.losses import kl_divergence, l1_penalty, reconstruction_loss


def test_reduction_is_sum_over_pixels_mean_over_batch():
    logits = torch.zeros(4, 1, 2, 3)  # sigmoid -> 0.5 everywhere
    target = torch.ones(4, 1, 2, 3)
    assert reconstruction_loss(logits, target, "gaussian").item() == pytest.approx(6 * 0.25)
    assert reconstruction_loss(logits, target, "bernoulli").item() == pytest.approx(6 * math.log(2))


def test_bernoulli_matches_bce_on_probabilities():
    logits, target = torch.randn(5, 1, 4, 4), torch.rand(5, 1, 4, 4).round()
    expected = F.binary_cross_entropy(torch.sigmoid(logits), target, reduction="sum") / 5
    torch.testing.assert_close(reconstruction_loss(logits, target, "bernoulli"), expected)


def test_kl_is_zero_at_the_prior_and_matches_torch_distributions():
    assert kl_divergence(torch.zeros(3, 2), torch.zeros(3, 2)).item() == 0
    mu, logvar = torch.randn(6, 3), torch.randn(6, 3)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    expected = torch.distributions.kl_divergence(q, p).sum(1).mean()
    torch.testing.assert_close(kl_divergence(mu, logvar), expected)


def test_l1_penalty():
    z = torch.tensor([[1.0, -2.0], [0.0, 3.0]])
    assert l1_penalty(z).item() == pytest.approx(3.0)


def test_unknown_likelihood_is_refused():
    with pytest.raises(ValueError, match="likelihood"):
        reconstruction_loss(torch.zeros(1, 1), torch.zeros(1, 1), "laplace")
