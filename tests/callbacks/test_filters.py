"""What a hidden unit sees: the first-layer weights of a dense encoder drawn as image tiles, each
to its own range; not drawn for a conv encoder; written by a training run."""

import numpy as np
import pytest
import torch
from PIL import Image

from ae_lab.figures import Filters
from ae_lab.figures.filters import normalised_tiles
from ae_lab.run.build import build_model
from ae_lab.run.checks import check_config
from ae_lab.run.train import run
from tests.conftest import TINY_RUN

SHAPE = (1, 28, 28)


def pattern() -> torch.Tensor:
    """A 28x28 image no unit would learn by chance: a diagonal ramp with a bright square."""
    rows, cols = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    image = (rows + 2 * cols) / 81 - 0.3  # from -0.3 to 0.7
    image[5:10, 15:20] = 2.0
    return image


def expected_tile(image: torch.Tensor) -> np.ndarray:
    scaled = (image - image.min()) / (image.max() - image.min())
    return (scaled.numpy() * 255).round().astype(np.uint8)


def test_a_units_tile_shows_its_weights(compose):
    model = build_model(compose(["model=ae", "model.net.hidden_dims=[16]"]).model, SHAPE)
    assert model.supports.dense_encoder and model.first_layer_weights().shape == (16, *SHAPE)
    with torch.no_grad():
        first = model.encoder.mlp.linears[0].weight
        first[0] = pattern().flatten()
        first[1] = -10 * pattern().flatten()  # the same pattern, scaled and inverted
    image = Filters(num_units=4).draw(model, None)["filters"]
    assert image.shape == (2 + 2 * 30, 2 + 2 * 30, 3) and image.dtype == np.uint8  # 2x2 tiles
    tile0, tile1 = image[2:30, 2:30], image[2:30, 32:60]
    assert (tile0 == tile0[..., :1]).all()  # grey
    np.testing.assert_allclose(tile0[..., 0], expected_tile(pattern()), atol=1)
    np.testing.assert_allclose(tile1[..., 0], 255 - expected_tile(pattern()), atol=1)
    assert model.training  # the model's mode is restored


def test_at_most_num_units_tiles_the_first_units(compose):
    model = build_model(compose(["model=ae", "model.net.hidden_dims=[16]"]).model, SHAPE)
    with torch.no_grad():
        model.encoder.mlp.linears[0].weight[3] = pattern().flatten()
    image = Filters(num_units=4).draw(model, None)["filters"]
    np.testing.assert_allclose(image[32:60, 32:60, 0], expected_tile(pattern()), atol=1)
    assert Filters(num_units=3).draw(model, None)["filters"].shape == image.shape  # 2x2 grid
    assert Filters(num_units=100).draw(model, None)["filters"].shape[:2] == (2 + 4 * 30,) * 2


def test_each_tile_is_normalised_to_its_own_range_over_its_channels():
    weights = torch.randn(3, 3, 5, 4) * torch.tensor([0.01, 1.0, 100.0]).view(3, 1, 1, 1)
    weights[2] = 7.0  # a constant tile
    tiles = normalised_tiles(weights)
    for unit in (0, 1):
        assert tiles[unit].min() == 0 and tiles[unit].max() == 1
    assert (tiles[2] == 0.5).all()


@pytest.mark.parametrize("model", ["cnn_ae", "cnn_vae"])
def test_not_drawn_for_a_conv_encoder(compose, model):
    net = build_model(compose([f"model={model}"]).model, SHAPE)
    assert not net.supports.dense_encoder and not Filters().applies_to(net)
    with pytest.raises(TypeError, match="dense encoder"):
        net.first_layer_weights()


def test_drawn_for_a_dense_vae(compose):
    net = build_model(compose(["model=vae"]).model, SHAPE)
    assert Filters().applies_to(net)
    assert net.first_layer_weights().shape[1:] == SHAPE


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("callbacks.filters.num_units=0", "num_units=0: must be >= 1 and <= 1024"),
        ("callbacks.filters.num_units=2000", "num_units=2000: must be >= 1 and <= 1024"),
    ],
)
def test_num_units_is_bounded(compose, override, message):
    with pytest.raises(Exception, match=message):
        check_config(compose([override]))


def test_a_training_run_writes_the_filters(compose, tmp_path, mnist_root):
    cfg = compose(["model=ae", "model.net.hidden_dims=[32]", "model.latent_dim=8",
                   f"data.root={mnist_root}", *TINY_RUN])  # fmt: skip
    run(cfg)
    path = tmp_path / "run" / "figures" / "filters" / "filters_epoch000.png"
    with Image.open(path) as image:
        assert image.size == (2 + 6 * 30, 2 + 6 * 30)  # 32 units: a 6x6 mosaic
