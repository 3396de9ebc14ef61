"""The vq bottleneck inside the model, built from the real config (``model=vq_vae``): its codes are
codebook entries, each term sends its gradient where it should, it composes with the other parts,
its codebook is part of the checkpoint, and bad settings are refused with one line."""

import pytest
import torch

from ae_lab.errors import UserError
from ae_lab.run.build import build_model
from ae_lab.run.checks import check_config
from tests.helpers.mnist import digit_like_images

SHAPE = (1, 28, 28)


@pytest.fixture(scope="module")
def batch():
    images, _ = digit_like_images(8, seed=0)
    return torch.from_numpy(images).float().div(255).unsqueeze(1)


def make(compose, *overrides):
    torch.manual_seed(0)
    return build_model(compose(["model=vq_vae", *overrides]).model, SHAPE)


def grads(module: torch.nn.Module) -> set[str]:
    """Names of the parameters with a nonzero gradient."""
    return {n for n, p in module.named_parameters() if p.grad is not None and p.grad.any()}


def test_the_preset_is_a_vq_model_without_a_prior(compose, batch):
    model = make(compose)
    assert model.supports.quantized and not model.supports.prior
    assert model.bottleneck.codebook_size == 512 and model.bottleneck.codebook_dim == 8
    with pytest.raises(TypeError, match="prior"):
        model.sample(2)
    model.objective(batch)  # a training step initialises the codes from the batch
    model.eval()
    with torch.no_grad():
        codes = model.encode(batch)
    vectors = codes.reshape(-1, 8)
    assert (vectors.unsqueeze(1) == model.bottleneck.codebook.unsqueeze(0)).all(-1).any(1).all()
    assert len(vectors.unique(dim=0)) > 1


def test_each_term_sends_its_gradient_where_it_should(compose, batch):
    model = make(compose, "model.ema=null")  # a codebook learned by gradient
    model.objective(batch.flip(-1))  # codes initialised from other data
    encoder = {f"encoder.{n}" for n, _ in model.encoder.named_parameters()}
    decoder = {f"decoder.{n}" for n, _ in model.decoder.named_parameters()}
    for term, reaches in [
        ("recon", encoder | decoder),  # straight through the quantiser to the encoder
        ("codebook", {"bottleneck.codebook"}),
        ("commitment", encoder),
    ]:
        model.zero_grad(set_to_none=True)
        model.objective(batch)[term].backward()
        assert grads(model) == reaches, term


def test_the_terms_add_up_and_a_penalty_applies_to_the_encoder_output(compose, batch):
    model = make(compose, "model/penalty=l1", "model.commitment=0.5", "model.ema=null")
    terms = model.objective(batch)
    expected = terms["recon"] + terms["codebook"] + 0.5 * terms["commitment"]
    torch.testing.assert_close(terms["loss"], expected + model.penalty.weight * terms["penalty"])
    h = model.encoder(batch)
    torch.testing.assert_close(terms["penalty"], h.abs().sum(1).mean())
    terms["loss"].backward()
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_with_ema_the_codebook_is_a_buffer_and_has_no_loss_term(compose, batch):
    model = make(compose, "model.ema=0.99")
    assert "bottleneck.codebook" not in dict(model.named_parameters())
    assert {"bottleneck.codebook", "bottleneck.ema_count", "bottleneck.ema_sum"} <= set(
        model.state_dict()
    )
    terms = model.objective(batch)
    assert "codebook" not in terms
    torch.testing.assert_close(terms["loss"], terms["recon"] + 0.25 * terms["commitment"])


@pytest.mark.parametrize(
    "parts",
    [
        ["model/net=conv"],
        ["model/corruption=masking"],
        ["model/net=conv", "model/corruption=gaussian", "model/penalty=contractive"],
        ["model.per_unit=true", "model.codebook_dim=null", "model.latent_dim=32"],
    ],
    ids=" ".join,
)
def test_it_composes_with_every_net_and_corruption(compose, batch, parts):
    model = make(compose, *parts, "model.latent_dim=16")
    assert model.supports.corruption == any("corruption" in p for p in parts)
    terms = model.objective(batch)
    terms["loss"].backward()
    assert all(p.grad is not None for p in model.encoder.parameters())
    model.eval()
    with torch.no_grad():
        assert model.reconstruct(batch).shape == batch.shape
        torch.testing.assert_close(model(batch), model(batch))  # deterministic in evaluation


def test_a_linear_net_with_a_codebook_is_no_linear_map(compose):
    model = make(compose, "model.net.hidden_dims=[]", "model.net.activation=identity",
                 "model.net.bias=false", "model.output_activation=identity")  # fmt: skip
    assert not model.supports.linear_map


def test_the_codebook_is_saved_and_restored_with_the_model(compose, batch):
    model = make(compose, "model.ema=0.9")
    model.objective(batch)  # initialised, EMA moved, idle counts set
    state = model.state_dict()
    assert state["bottleneck.initialized"].item()
    again = make(compose, "model.ema=0.9")
    again.load_state_dict(state)
    model.eval(), again.eval()
    with torch.no_grad():
        torch.testing.assert_close(again.encode(batch), model.encode(batch))
    assert torch.equal(again.bottleneck.idle_steps, model.bottleneck.idle_steps)
    # a restored model is not initialised again from its next batch
    before = again.bottleneck.codebook.clone()
    again.train().objective(batch[:2] * 0 + 7)
    assert torch.isclose(again.bottleneck.codebook, before).all(1).float().mean() > 0.5


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.ema=1.5"], "model.ema=1.5: must be > 0 and < 1, or null"),
        (["model.codebook_size=1"], "model.codebook_size=1: must be >= 2"),
        (["model.commitment=-1"], "model.commitment=-1: must be >= 0"),
        (["model.codebook_dim=0"], "model.codebook_dim=0: must be >= 1"),
        (["model.dead_code_steps=0"], "model.dead_code_steps=0: must be >= 1, or null"),
        (["model.per_unit=yes"], "model.per_unit='yes': must be true or false"),
        (["model.bottleneck=vqq"], "model.bottleneck='vqq': must be one of 'deterministic'"),
        (["model.codebook_init=kmeans"], "model.codebook_init='kmeans': must be one of 'data'"),
    ],
)
def test_bad_settings_are_refused_before_training(compose, overrides, message):
    with pytest.raises(UserError) as refused:
        check_config(compose(["model=vq_vae", *overrides]))
    assert message in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.latent_dim=12"], "model.latent_dim=12 is not a multiple of model.codebook_dim=8"),
        (["model.per_unit=true"], "model.per_unit=true quantises each unit to a scalar level"),
        (
            ["model.bottleneck=deterministic"],
            "model.codebook_size configures a codebook: it needs model.bottleneck=vq",
        ),
        (["model.bottleneck=vq", "+model.beta=2"], "model.beta and model.warmup_steps weigh"),
    ],
)
def test_settings_that_disagree_are_refused_when_the_model_is_built(compose, overrides, message):
    cfg = compose(["model=vq_vae", *overrides])
    check_config(cfg)
    with pytest.raises(UserError) as refused:
        build_model(cfg.model, SHAPE)
    assert message in str(refused.value) and "\n" not in str(refused.value)
