"""Parts combine: every corruption and penalty on every bottleneck, and each part does what its
config says (the terms add up, the corruption stays inside the objective, beta warms up)."""

import pytest
import torch

from ae_lab.run.build import build_model
from tests.helpers.configs import options
from tests.helpers.mnist import digit_like_images

SHAPE = (1, 28, 28)
CORRUPTIONS = [None, *options("model/corruption")]
PENALTIES = [None, *options("model/penalty")]


@pytest.fixture(scope="module")
def batch():
    images, _ = digit_like_images(8, seed=0)
    return torch.from_numpy(images).float().div(255).unsqueeze(1)


def make(compose, model, corruption=None, penalty=None, *overrides):
    parts = [f"model/corruption={corruption}"] * bool(corruption)
    parts += [f"model/penalty={penalty}"] * bool(penalty)
    return build_model(compose([f"model={model}", *parts, *overrides]).model, SHAPE)


@pytest.mark.parametrize("penalty", PENALTIES)
@pytest.mark.parametrize("corruption", CORRUPTIONS)
@pytest.mark.parametrize("model", ["ae", "vae"])
def test_any_corruption_and_penalty_on_any_bottleneck(compose, batch, model, corruption, penalty):
    torch.manual_seed(0)
    net = make(compose, model, corruption, penalty)
    assert net.supports.prior == (model == "vae")
    assert net.supports.corruption == (corruption is not None)
    terms = net.objective(batch)
    expected = terms["recon"]
    if net.supports.prior:
        expected = expected + terms["beta"] * terms["kl"]
    if penalty:
        expected = expected + net.penalty.weight * terms["penalty"]
    else:
        assert "penalty" not in terms
    torch.testing.assert_close(terms["loss"], expected)
    terms["loss"].backward()
    assert all(p.grad is not None for p in net.encoder.parameters())


@pytest.mark.parametrize("penalty", PENALTIES[1:])
def test_the_penalty_weight_is_the_configured_one(compose, batch, penalty):
    net = make(compose, "ae", None, penalty, "model.penalty.weight=0.5")
    terms = net.objective(batch)
    torch.testing.assert_close(terms["loss"], terms["recon"] + 0.5 * terms["penalty"])


def test_a_vae_penalises_its_posterior_mean(compose, batch):
    """The sparse VAE's L1 is on the code the figures show: the posterior mean."""
    net = make(compose, "vae", None, "l1", "model.latent_dim=4")
    mu = net.encode(batch)
    torch.testing.assert_close(net.objective(batch)["penalty"], mu.abs().sum(1).mean())


def test_a_contractive_vae_takes_the_jacobian_of_the_mean_only(compose, batch):
    from ae_lab.models.jacobian import _generic_jacobian_frobenius_sq

    net = make(compose, "vae", None, "contractive", "model.latent_dim=3").double()
    x = batch[:3].double()
    closed = net.penalty.value(net.encoder, x, None, slice(0, 3))
    generic = _generic_jacobian_frobenius_sq(net.encoder, x, slice(0, 3))
    whole = _generic_jacobian_frobenius_sq(net.encoder, x)
    torch.testing.assert_close(closed, generic)
    assert whole > closed  # the log-variance rows are not part of the code


def test_corruption_stays_inside_the_objective(compose, batch):
    net = make(compose, "vae", "masking", None, "model.corruption.p=0.5").eval()
    with torch.no_grad():
        torch.testing.assert_close(net(batch), net(batch))  # forward is deterministic
        masked = net.corrupt(batch)
    assert (masked == 0).float().mean() > (batch == 0).float().mean()


def test_beta_warms_up_linearly(compose):
    net = make(compose, "vae", None, None, "model.beta=2.0", "model.warmup_steps=10")
    assert [net.bottleneck.beta_at(s) for s in (0, 5, 10, 20)] == [0.0, 1.0, 2.0, 2.0]


def test_a_deterministic_model_refuses_a_kl_weight(compose):
    with pytest.raises(Exception, match="bottleneck=gaussian"):
        make(compose, "ae", None, None, "+model.beta=4")


def test_linear_model_is_its_weight_product(compose, batch):
    net = make(compose, "linear_ae")
    assert net.supports.linear_map and net.latent_dim == 28 * 28
    with torch.no_grad():
        torch.testing.assert_close(net(batch).flatten(1), batch.flatten(1) @ net.weight_product().T)
    assert not make(compose, "ae").supports.linear_map
