"""Invariants of every model, built from its real config."""

import pytest
import torch

from ae_lab.models import VAE, DenoisingAutoencoder, LinearAutoencoder
from ae_lab.train import build_model
from tests.helpers.mnist import digit_like_images

MODELS = [
    "linear_ae",
    "ae",
    "sparse_ae",
    "contractive_ae",
    "denoising_ae",
    "vae",
    "cnn_ae",
    "cnn_vae",
]
SHAPE = (1, 28, 28)


def make(compose, name, *overrides):
    cfg = compose([f"model={name}", *overrides])
    return build_model(cfg.model, SHAPE)


@pytest.fixture(scope="module")
def batch():
    images, _ = digit_like_images(16, seed=0)
    return torch.from_numpy(images).float().div(255).unsqueeze(1)


@pytest.mark.parametrize("name", MODELS)
def test_shapes(compose, name, batch):
    model = make(compose, name).eval()
    with torch.no_grad():
        z = model.encode(batch)
        assert z.shape == (16, model.latent_dim)
        assert model.decode(z).shape == batch.shape
        assert model(batch).shape == batch.shape
    if isinstance(model, VAE):
        assert model.sample(5).shape == (5, *SHAPE)


@pytest.mark.parametrize("name", MODELS)
def test_every_parameter_gets_a_gradient_and_the_terms_are_named(compose, name, batch):
    model = make(compose, name)
    terms = model.objective(batch)
    assert "loss" in terms and "recon" in terms
    terms["loss"].backward()
    assert not [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]


@pytest.mark.parametrize("name", MODELS)
def test_loss_falls_when_overfitting_one_batch(compose, name, batch):
    torch.manual_seed(0)
    model = make(compose, name, "model.optimizer.lr=3e-3")
    optimizer = model.configure_optimizers()
    first = None
    for _ in range(60):
        loss = model.objective(batch)["loss"]
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    final = model.objective(batch)["loss"].item()
    assert final < 0.5 * first, f"{name}: loss {first:.3f} -> {final:.3f}"


@pytest.mark.parametrize("name", ["ae", "sparse_ae", "contractive_ae", "vae", "cnn_vae"])
def test_batch_independence_in_eval_mode(compose, name, batch):
    model = make(compose, name).eval()
    with torch.no_grad():
        full = model(batch)
        alone = model(batch[3:4])
    torch.testing.assert_close(full[3:4], alone, rtol=1e-4, atol=1e-5)


def test_penalties_add_to_the_reconstruction(compose, batch):
    for name in ("sparse_ae", "contractive_ae"):
        model = make(compose, name, "model.penalty_weight=0.5")
        terms = model.objective(batch)
        torch.testing.assert_close(terms["loss"], terms["recon"] + 0.5 * terms["penalty"])


def test_denoiser_corrupts_only_inside_its_objective(compose, batch):
    model = make(compose, "denoising_ae", "model.corruption.p=0.5")
    assert isinstance(model, DenoisingAutoencoder)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(batch), model(batch))  # forward is deterministic


def test_linear_model_is_its_weight_product(compose, batch):
    model = make(compose, "linear_ae")
    assert isinstance(model, LinearAutoencoder)
    assert model.latent_dim == 28 * 28
    product = model.weight_product()
    assert product.shape == (784, 784)
    with torch.no_grad():
        torch.testing.assert_close(model(batch).flatten(1), batch.flatten(1) @ product.T)


def test_vae_elbo_terms_and_beta_warmup(compose, batch):
    model = make(compose, "vae", "model.beta=2.0", "model.warmup_steps=10")
    assert model.current_beta() == 0.0  # global_step 0 outside a trainer
    terms = model.objective(batch)
    torch.testing.assert_close(terms["elbo"], -(terms["recon"] + terms["kl"]))
    assert terms["kl"] >= 0


def test_checkpoint_reloads_with_weights_only(compose, batch, tmp_path):
    import lightning as L

    model = make(compose, "denoising_ae")
    trainer = L.Trainer(max_steps=0, logger=False, enable_checkpointing=False)
    trainer.strategy.connect(model)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    again = DenoisingAutoencoder.load_from_checkpoint(path, weights_only=True)
    again.eval(), model.eval()
    with torch.no_grad():
        torch.testing.assert_close(again(batch), model(batch))
    assert repr(again.corruption) == repr(model.corruption)
