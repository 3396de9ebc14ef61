"""Invariants of every model config in ``conf/model/`` (discovered, never listed), built from its
real config: shapes, gradients, overfitting one batch, batch independence, checkpoint reload."""

import pytest
import torch

from ae_lab.models import Autoencoder
from ae_lab.run.build import build_model
from tests.helpers.configs import options
from tests.helpers.mnist import digit_like_images

MODELS = options("model")
SHAPE = (1, 28, 28)


def make(compose, name, *overrides):
    cfg = compose([f"model={name}", *overrides])
    return build_model(cfg.model, SHAPE)


@pytest.fixture(scope="module")
def batch():
    images, _ = digit_like_images(16, seed=0)
    return torch.from_numpy(images).float().div(255).unsqueeze(1)


@pytest.mark.parametrize("name", MODELS)
def test_shapes_and_the_public_api(compose, name, batch):
    model = make(compose, name).eval()
    with torch.no_grad():
        z = model.encode(batch)
        assert z.shape == (16, model.latent_dim)
        assert model.decode(z).shape == batch.shape
        assert model.reconstruct(batch).shape == batch.shape
        torch.testing.assert_close(model(batch), model.reconstruct(batch))
        path = model.interpolate(batch[:3], batch[3:6], 5)
        assert path.shape == (3, 5, *SHAPE)
        # the path starts and ends at the two images' reconstructions
        torch.testing.assert_close(path[:, 0], model.reconstruct(batch[:3]))
        torch.testing.assert_close(path[:, -1], model.reconstruct(batch[3:6]))
        if model.supports.prior:
            assert model.sample(5).shape == (5, *SHAPE)
            assert model.kl_per_unit(batch).shape == (model.latent_dim,)
        else:
            with pytest.raises(TypeError, match="prior"):
                model.sample(5)
        if model.supports.corruption:
            assert model.corrupt(batch).shape == batch.shape
        if model.supports.linear_map:
            assert model.weight_product().shape == (784, 784)


@pytest.mark.parametrize("name", MODELS)
def test_every_parameter_gets_a_gradient_and_the_terms_are_named(compose, name, batch):
    model = make(compose, name)
    terms = model.objective(batch)
    assert "loss" in terms and "recon" in terms
    assert ("kl" in terms and "elbo" in terms) == model.supports.prior
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


@pytest.mark.parametrize("name", MODELS)
def test_batch_independence_in_eval_mode(compose, name, batch):
    model = make(compose, name).eval()
    with torch.no_grad():
        full = model(batch)
        alone = model(batch[3:4])
    torch.testing.assert_close(full[3:4], alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_reloads_with_weights_only(compose, name, batch, tmp_path):
    import lightning as L

    model = make(compose, name)
    trainer = L.Trainer(max_steps=0, logger=False, enable_checkpointing=False)
    trainer.strategy.connect(model)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    again = Autoencoder.load_from_checkpoint(path, weights_only=True)
    again.eval(), model.eval()
    with torch.no_grad():
        torch.testing.assert_close(again(batch), model(batch))
    assert again.supports == model.supports
    assert repr(again.corruption) == repr(model.corruption)
    assert repr(again.penalty) == repr(model.penalty)


@pytest.mark.parametrize("name", MODELS)
def test_a_denoising_model_reports_its_error_on_clean_images(compose, name, batch, monkeypatch):
    """``recon`` is of the corrupted image's reconstruction; ``recon_clean`` of the clean one (what
    ae_bakeoff reports), only where there is a corruption."""
    model = make(compose, name).eval()
    logged: dict[str, float] = {}
    monkeypatch.setattr(model, "log", lambda name, value, **_: logged.update({name: value}))
    monkeypatch.setattr(model, "log_dict", lambda values, **_: logged.update(values))
    if model.supports.corruption:
        model.corruption = torch.zeros_like  # a fixed corruption: every image black
    with torch.no_grad():
        model.validation_step((batch, torch.zeros(len(batch))), 0)
    if not model.supports.corruption:
        assert "val/recon_clean" not in logged
        return
    if not model.supports.prior:  # (a VAE's recon is of a posterior sample)
        with torch.no_grad():
            blacked_out = model.objective(batch)["recon"]
            model.corruption = None  # the same model, fed the clean images
            clean = model.objective(batch)["recon"]
        torch.testing.assert_close(logged["val/recon"], blacked_out)
        torch.testing.assert_close(logged["val/recon_clean"], clean)
    assert logged["val/recon_clean"] != logged["val/recon"]
