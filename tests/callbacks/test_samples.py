"""The samples figure, for every model: images decoded from codes of a density fitted to the
training codes; for a VAE, prior samples beside them, each panel titled. Its settings are checked
before training, and ``eval.py`` refits with other ones."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import ae_lab.figures.samples as samples_module
from ae_lab.data import MNISTDataModule
from ae_lab.errors import UserError
from ae_lab.figures import Samples, drawing
from ae_lab.figures.samples import titled_panels
from ae_lab.latent.codes import split_codes
from ae_lab.latent.density import fit_density
from ae_lab.run.build import build_model
from ae_lab.run.checks import check_config
from ae_lab.run.eval_config import retarget_moved
from ae_lab.run.train import run
from tests.conftest import TINY_RUN
from tests.test_eval import evaluate


@pytest.fixture
def panels(monkeypatch):
    """The mosaics and titles each draw hands to :func:`titled_panels`."""
    seen = []

    def spy(mosaics, titles):
        seen.append((list(mosaics), list(titles)))
        return titled_panels(mosaics, titles)

    monkeypatch.setattr(samples_module, "titled_panels", spy)
    return seen


def model_and_data(compose, mnist_root, model: str):
    cfg = compose([f"model={model}", f"data.root={mnist_root}", "model.latent_dim=4"])
    data = MNISTDataModule(str(mnist_root), seed=0)
    return build_model(cfg.model, data.image_shape), data


def test_an_autoencoder_draws_samples_of_the_density_fitted_to_its_training_codes(
    compose, mnist_root, panels
):
    model, data = model_and_data(compose, mnist_root, "ae")
    figure = Samples(num_examples=9, components=3, seed=5)
    assert figure.applies_to(model) and not model.supports.prior
    image = figure.draw(model, data)["samples"]
    assert model.training  # the model's mode is restored
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    ((mosaics, titles),) = panels
    assert len(mosaics) == 1 and titles[0].startswith("fitted GMM (3 components, full)")
    # the panel holds the decoded draws of exactly that density, fitted to the training codes
    codes = split_codes(model, data, "train", limit=10_000, seed=5).codes
    assert f"on {len(codes):,} training codes" in titles[0]
    density = fit_density(codes, "gmm", 3, "full", seed=5)
    with torch.no_grad():
        expected = model.eval().decode(density.sample(9, seed=5))
    np.testing.assert_array_equal(mosaics[0], drawing.image_grid(expected, nrow=3))


def test_a_vae_draws_prior_and_fitted_samples_side_by_side(compose, mnist_root, panels):
    model, data = model_and_data(compose, mnist_root, "vae")
    ae_width = Samples(num_examples=4).draw(*model_and_data(compose, mnist_root, "ae"))
    image = Samples(num_examples=4, density="gaussian", covariance="diag").draw(model, data)
    (_, _), (mosaics, titles) = panels
    assert len(mosaics) == 2
    assert titles[0].startswith("prior N(0, I)")
    assert titles[1].startswith("fitted Gaussian (diag covariance)")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        prior = model.eval().sample(4, generator=generator)
    np.testing.assert_array_equal(mosaics[0], drawing.image_grid(prior, nrow=2))
    # two panels of the same size: about twice as wide as the autoencoder's one
    width, single = image["samples"].shape[1], ae_width["samples"].shape[1]
    assert 1.8 * single < width < 2.1 * single


def test_titled_panels_show_each_mosaic_pixel_for_pixel():
    red, blue = (200, 30, 30), (30, 30, 200)
    left, right = np.full((30, 20, 3), red, np.uint8), np.full((30, 40, 3), blue, np.uint8)
    image = titled_panels([left, right], ["red", "blue"])
    scale = round(400 / 30)  # small mosaics are enlarged by a whole factor
    reds, blues = (image == red).all(axis=2).nonzero(), (image == blue).all(axis=2).nonzero()
    assert len(reds[0]) == 30 * 20 * scale**2 and len(blues[0]) == 30 * 40 * scale**2
    assert np.ptp(reds[0]) + 1 == 30 * scale and np.ptp(reds[1]) + 1 == 20 * scale
    assert np.ptp(blues[0]) + 1 == 30 * scale and np.ptp(blues[1]) + 1 == 40 * scale
    assert reds[1].max() < blues[1].min() and reds[0].min() == blues[0].min()  # side by side
    above = image[: reds[0].min()]
    assert (above.max(axis=2) < 100).any()  # the titles: dark text above the panels
    with pytest.raises(ValueError, match="one title per panel"):
        titled_panels([left], ["a", "b"])


class Few:
    """A datamodule of ``n`` training images."""

    image_shape = (1, 28, 28)

    def __init__(self, n: int) -> None:
        self.images = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))

    def split_size(self, split: str) -> int:
        return len(self.images)

    def sample_batch(self, n, split, seed):
        return self.images[:n], torch.zeros(min(n, len(self.images)), dtype=torch.long)


def test_a_tiny_training_split_fits_fewer_components_or_draws_what_it_can(
    compose, mnist_root, panels
):
    ae, _ = model_and_data(compose, mnist_root, "ae")
    Samples(num_examples=4, components=10).draw(ae, Few(3))
    assert panels[-1][1][0].startswith("fitted GMM (3 components, full)\non 3 training codes")
    with pytest.warns(UserWarning, match=r"\[samples\] no density fitted.*at least 2 codes, got 1"):
        assert Samples(num_examples=4).draw(ae, Few(1)) == {}
    vae, _ = model_and_data(compose, mnist_root, "vae")
    with pytest.warns(UserWarning, match="no density fitted"):
        assert set(Samples(num_examples=4).draw(vae, Few(1))) == {"samples"}
    assert panels[-1][1] == ["prior N(0, I)\n"]  # the prior's panel alone


@pytest.mark.parametrize(
    "settings, says",
    [
        ({"density": "kde"}, "callbacks.samples.density must be one of gaussian, gmm, got 'kde'"),
        ({"covariance": "banana"}, "callbacks.samples.covariance must be one of full, diag"),
        ({"components": 0}, "callbacks.samples.components must be >= 1, got 0"),
        ({"num_codes": 1}, "callbacks.samples.num_codes must be >= 2, got 1"),
        ({"max_iter": 0}, "callbacks.samples.max_iter must be >= 1, got 0"),
    ],
)
def test_bad_settings_are_named(settings, says):
    with pytest.raises(ValueError) as error:
        Samples(**settings)
    assert says in str(error.value)


@pytest.mark.parametrize(
    "override, says",
    [
        (
            "callbacks.samples.components=0",
            "callbacks.samples.components=0: must be >= 1 and <= 100",
        ),
        ("callbacks.samples.components=500", "components=500: must be >= 1 and <= 100"),
        ("callbacks.samples.num_codes=100000", "num_codes=100000: must be >= 2 and <= 60000"),
        ("callbacks.samples.max_iter=0", "callbacks.samples.max_iter=0: must be >= 1"),
        (
            "callbacks.samples.covariance=banana",
            "callbacks.samples.covariance='banana': must be one of 'full'",
        ),
        ("callbacks.samples.density=kde", "callbacks.samples.density='kde': must be one of 'gmm'"),
    ],
)
def test_bad_settings_are_refused_before_training(compose, override, says):
    with pytest.raises(UserError) as error:
        check_config(compose([override]))
    assert says in str(error.value)


def test_eval_refits_with_other_settings(compose, tmp_path, mnist_root, monkeypatch):
    run(compose(["model=ae", f"data.root={mnist_root}", *TINY_RUN, "model.latent_dim=8"]))
    fits = []

    def recorded(codes, kind, components, covariance_type, seed, max_iter):
        fits.append((kind, components, covariance_type))
        return fit_density(codes, kind, components, covariance_type, seed, max_iter)

    monkeypatch.setattr(samples_module, "fit_density", recorded)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    overrides = ["callbacks.samples.components=5", "callbacks.samples.covariance=diag"]
    evaluate(ckpt, *overrides, out=tmp_path / "e")
    assert fits == [("gmm", 5, "diag")]
    assert (tmp_path / "e" / "figures" / "samples" / "samples.png").is_file()


def test_a_run_of_the_prior_samples_figure_evaluates_with_the_samples_figure():
    saved = OmegaConf.create(
        {"callbacks": {"samples": {"_target_": "ae_lab.figures.PriorSamples"}}}
    )
    retarget_moved(saved)
    assert saved.callbacks.samples._target_ == "ae_lab.figures.Samples"
