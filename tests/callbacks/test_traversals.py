"""Traversals per latent unit: rows ranked by KL (a VAE) or code variance (an AE), each sweeping its
unit over the prior's central quantiles or the unit's own range around a fixed validation image's
code; a unit at zero KL that the decoder ignores gives one image across its row; the PNG is
labelled, the GIF has a frame per column; sizes are bounded before training."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from ae_lab.data import MNISTDataModule
from ae_lab.errors import exit_with
from ae_lab.figures import Traversals
from ae_lab.figures.drawing import encode_gif
from ae_lab.figures.traversals import PADDING, rank_units, traversal_figure
from ae_lab.run.build import build_model
from ae_lab.run.checks import check_config
from ae_lab.run.train import run
from tests.conftest import TINY_RUN

SMALL = ["model.net.hidden_dims=[32]", "model.latent_dim=4"]


@pytest.fixture(scope="module")
def data(mnist_root):
    return MNISTDataModule(str(mnist_root), seed=0)


def model_for(compose, data, model: str):
    small = ["model.net.channels=[8,16]", "model.latent_dim=4"] if "cnn" in model else SMALL
    return build_model(compose([f"model={model}", *small]).model, data.image_shape)


def set_posterior(vae, mu: list[float]) -> None:
    """Every image's posterior ``N(mu, I)``: the unit's KL is exactly ``mu_u**2 / 2``."""
    last = vae.encoder.mlp.linears[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([*mu, *[0.0] * len(mu)]))  # [mu, logvar = 0]


def gif_cells(frames: list[np.ndarray], rows: int, height: int, scale: int) -> np.ndarray:
    """``(frames, rows, H, W, 3)``: each row's cell in each frame of the sweep GIF."""
    grid = int(np.ceil(np.sqrt(rows)))
    pitch, size = scale * (height + PADDING), scale * height
    at = [(scale * PADDING + (r // grid) * pitch, scale * PADDING + (r % grid) * pitch)
          for r in range(rows)]  # fmt: skip
    return np.stack([[f[y : y + size, x : x + size] for y, x in at] for f in frames])


def test_a_unit_at_zero_kl_that_the_decoder_ignores_gives_one_image_across_its_row(compose, data):
    vae = model_for(compose, data, "vae")
    dead = 2
    with torch.no_grad():  # the encoder gives the unit mu = 0, logvar = 0; the decoder ignores it
        for row in (dead, vae.latent_dim + dead):
            vae.encoder.mlp.linears[-1].weight[row] = 0
            vae.encoder.mlp.linears[-1].bias[row] = 0
        vae.decoder.mlp.linears[0].weight[:, dead] = 0
    figure = Traversals(num_units=4, steps=7, num_points=64)
    with torch.no_grad():
        plan = figure.plan(vae.eval(), data)
        paths = vae.decode(plan.codes().flatten(0, 1)).unflatten(0, (4, 7))
    assert plan.units[-1] == dead and plan.scores[-1] == 0  # ranked last, at zero KL
    assert (plan.scores[:-1] > 0).all()
    row = paths[-1]
    assert (row - row[0]).abs().max() <= 1e-6
    for other in paths[:-1]:  # the units that carry something change their image
        assert (other - other[0]).abs().amax(dim=(1, 2, 3))[-1] > 1e-3
    # as drawn: the dead unit's cell of the GIF is the same in every frame, the others are not
    frames = figure.draw(vae, data)["sweep"]
    cells = gif_cells(frames, 4, 28, scale=64 // 28)
    assert (cells[:, -1] == cells[0, -1]).all()
    assert all((cells[:, r] != cells[0, r]).any() for r in range(3))


def test_a_vae_s_rows_are_its_units_of_highest_kl_swept_over_the_prior_s_quantiles(compose, data):
    vae = model_for(compose, data, "vae")
    set_posterior(vae, [0.5, -3.0, 0.0, 1.5])  # KL 0.125, 4.5, 0, 1.125
    plan = Traversals(num_units=3, steps=5, num_points=50).plan(vae, data)
    assert plan.units.tolist() == [1, 3, 0]
    torch.testing.assert_close(plan.scores, torch.tensor([4.5, 1.125, 0.125]))
    expected = torch.linspace(-1.6449, 1.6449, 5)  # N(0, 1)'s 5% and 95% quantiles
    torch.testing.assert_close(plan.values, expected.expand(3, 5), atol=1e-4, rtol=0)
    codes = plan.codes()
    assert torch.equal(codes[1, :, 3], plan.values[1])  # row 1 sweeps unit 3 ...
    assert torch.equal(codes[1, :, [0, 1, 2]], plan.base[[0, 1, 2]].expand(5, 3))  # ... alone
    assert plan.row_labels()[0] == "z[1]\nKL 4.5"


def test_an_ae_s_rows_are_its_units_of_highest_variance_over_their_own_range(compose, data):
    ae = model_for(compose, data, "ae")
    last = ae.encoder.mlp.linears[-1]
    with torch.no_grad():  # code_u = c_u * (w . h) + b_u: variances in the ratio c_u**2
        last.weight.copy_(torch.tensor([1.0, 0.0, 3.0, 2.0])[:, None] * last.weight[:1])
    figure = Traversals(num_units=4, steps=6, num_points=200, seed=3)
    plan = figure.plan(ae, data)
    assert plan.units.tolist() == [2, 3, 0, 1]
    images, _ = data.sample_batch(200, split="val", seed=3)
    with torch.no_grad():
        codes = ae.encode(images)
    assert torch.allclose(plan.base, codes[0])  # the base: the first seeded validation image's
    torch.testing.assert_close(plan.scores, codes[:, plan.units].var(0, unbiased=False))
    for row, unit in enumerate(plan.units.tolist()):
        low, high = np.percentile(codes[:, unit].numpy(), [5, 95])
        expected = torch.linspace(float(low), float(high), 6)
        torch.testing.assert_close(plan.values[row], expected, atol=1e-5, rtol=1e-5)
    label = plan.row_labels()[0]
    assert label.startswith("z[2]\nvar ") and "…" in label


def test_ranking_takes_the_highest_first_and_keeps_ties_in_unit_order():
    assert rank_units(torch.tensor([0.1, 5.0, 0.1, 2.0, 0.1]), 4).tolist() == [1, 3, 0, 2]
    assert rank_units(torch.tensor([1.0, 2.0]), 8).tolist() == [1, 0]  # a narrower latent


def test_every_row_of_the_png_is_labelled():
    rows, steps = 5, 4
    paths = torch.rand(rows, steps, 1, 28, 28)
    args = (["a" for _ in range(steps)], "title", "x")
    labelled = traversal_figure(paths, [f"z[{r}]\nKL 1.0" for r in range(rows)], *args)
    blank = traversal_figure(paths, ["" for _ in range(rows)], *args)
    assert labelled.shape == blank.shape
    scale, top = 56 // 28, 62  # the mosaic's scale and top margin (pixels)
    for r in range(rows):
        centre = top + scale * (PADDING + r * (28 + PADDING) + 14)
        band = labelled[centre - 12 : centre + 12, :105]
        assert (band < 128).any(), f"row {r} has no label"
        assert (blank[centre - 12 : centre + 12, :105] > 250).all()


@pytest.mark.parametrize("model", ["ae", "cnn_vae"])
def test_the_gif_has_one_frame_per_column(compose, data, model):
    net = model_for(compose, data, model)
    rendered = Traversals(num_units=3, steps=5, num_points=32).draw(net, data)
    assert set(rendered) == {"traversals", "sweep"} and len(rendered["sweep"]) == 5
    png = rendered["traversals"]
    assert png.dtype == np.uint8 and png.ndim == 3 and png.shape[0] > 3 * 56
    with Image.open(io.BytesIO(encode_gif(rendered["sweep"], 150))) as gif:
        assert gif.n_frames == 5
    assert net.training  # the model's mode is restored


def test_a_training_run_writes_the_grid_and_the_gif(compose, tmp_path, mnist_root):
    cfg = compose(["model=vae", *SMALL, f"data.root={mnist_root}", *TINY_RUN,
                   "callbacks.traversals.steps=7", "callbacks.traversals.num_points=64"])  # fmt: skip
    run(cfg)
    folder = tmp_path / "run" / "figures" / "traversals"
    with Image.open(folder / "traversals_epoch000.png") as image:
        assert image.width > 7 * 56 and image.height > 4 * 56  # 4 rows (the latent) of 7
    with Image.open(folder / "sweep_epoch000.gif") as gif:
        assert gif.n_frames == 7 and gif.info["duration"] == 150


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("num_units=0", "num_units=0: must be >= 1 and <= 32"),
        ("num_units=100", "num_units=100: must be >= 1 and <= 32"),
        ("steps=1", "steps=1: must be >= 2 and <= 25"),
        ("steps=1000", "steps=1000: must be >= 2 and <= 25"),
        ("num_points=100000", "num_points=100000: must be >= 1 and <= 5000"),
        ("frame_ms=0", "frame_ms=0: must be >= 1 and <= 10000"),
        (
            "every_n_epochs=0",
            "every_n_epochs=0: must be >= 1, or null (about 10 draws over the run)",
        ),
    ],
)
def test_sizes_out_of_bounds_are_refused_with_one_error_line(compose, capsys, override, message):
    with pytest.raises(Exception) as refused:
        check_config(compose([f"callbacks.traversals.{override}"]))
    with pytest.raises(SystemExit) as exited:
        exit_with(refused.value)
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"error: callbacks.traversals.{message}\n"


def test_settings_below_their_least_are_refused_when_built_directly():
    with pytest.raises(ValueError, match="callbacks.traversals.steps must be >= 2, got 1"):
        Traversals(steps=1)
