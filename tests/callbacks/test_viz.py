"""The pure drawing functions: arrays in, images that show what they claim out."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from ae_lab.figures import drawing as viz
from ae_lab.figures.weight_product import identity_metrics


def test_image_grid_places_images_row_major():
    images = torch.zeros(6, 1, 4, 4)
    images[1] = 1.0  # second image white
    grid = viz.image_grid(images, nrow=3, padding=0)
    assert grid.shape == (8, 12, 3) and grid.dtype == np.uint8
    assert (grid[:4, 4:8] == 255).all() and (grid[:4, :4] == 0).all() and (grid[4:, :] == 0).all()


def _diagonal_pixels(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of ``mask`` in rows holding at most 3 of them (a thin line, not a colour bar)."""
    thin_rows = mask.sum(axis=1) <= 3
    return np.nonzero(mask & thin_rows[:, None])


@pytest.mark.parametrize("n", [200, 784])
def test_weight_product_heatmap_shows_the_diagonal(n):
    """At least one screen pixel per entry, so the identity's diagonal survives as a line: dark red
    (+1 in RdBu_r) in the raw panel, yellow (1 in viridis) in the clipped panel."""
    image = viz.weight_product_figure(np.eye(n)).astype(int)
    half = image.shape[1] // 2
    for panel, colour in ((image[:, :half], (103, 0, 31)), (image[:, half:], (253, 231, 37))):
        close = np.abs(panel - colour).sum(axis=2) < 30
        rows, cols = _diagonal_pixels(close)
        assert len(rows) >= 0.95 * n, f"only {len(rows)} diagonal pixels for {n} entries"
        offsets = cols - rows
        assert np.percentile(offsets, 95) - np.percentile(offsets, 5) <= 3


def test_identity_metrics():
    images = torch.rand(50, 1, 4, 4)
    images[:, :, 0, 0] = 0  # a pixel that never varies
    exact = identity_metrics(torch.eye(16), images)
    assert exact["identity_error"] == pytest.approx(0, abs=1e-6)
    assert exact["diag_mean"] == pytest.approx(1) and exact["offdiag_abs_mean"] == 0
    half = identity_metrics(0.5 * torch.eye(16), images)
    assert half["identity_error"] == pytest.approx(0.5, rel=1e-5)
    w = torch.eye(16)
    w[0, 0] = 0  # the constant pixel does not count in the diagonal mean
    assert identity_metrics(w, images)["diag_mean"] == pytest.approx(1)


def test_manifold_codes_match_the_scatter_axes():
    codes = viz.manifold_codes(3, [-1, -2], [1, 2])
    assert codes.shape == (9, 2)
    assert codes[0].tolist() == [-1, 2]  # top-left: smallest z0, largest z1
    assert codes[-1].tolist() == [1, -2]


def test_ping_pong_plays_forward_then_back():
    assert viz.ping_pong([0, 1, 2, 3]) == [0, 1, 2, 3, 2, 1]


def test_gif_and_png_decode():
    frames = [np.full((8, 8, 3), v, np.uint8) for v in (0, 120, 240)]
    with Image.open(io.BytesIO(viz.encode_gif(frames, frame_ms=90))) as image:
        assert image.n_frames == 3 and image.info["loop"] == 0 and image.info["duration"] == 90
    png = Image.open(io.BytesIO(viz.encode_png(frames[1])))
    assert np.array_equal(np.asarray(png.convert("RGB")), frames[1])


def test_scatter_and_principal_axes():
    codes = np.random.default_rng(0).normal(size=(100, 5)) * [5, 1, 0.1, 0.1, 0.1]
    projected, title, axes = viz.principal_axes(codes)
    assert projected.shape == (100, 2) and "principal" in title and axes == ("PC 1", "PC 2")
    assert projected[:, 0].std() > 3 * projected[:, 1].std()
    image = viz.latent_scatter(projected, np.arange(100) % 10, [str(i) for i in range(10)], title)
    assert image.ndim == 3 and image.shape[2] == 3 and image.std() > 0


def test_fit_width_shrinks_wide_images_only():
    wide = np.zeros((100, 1600, 3), np.uint8)
    assert viz.fit_width(wide, 800).shape == (50, 800, 3)
    narrow = np.zeros((10, 20, 3), np.uint8)
    assert viz.fit_width(narrow, 800) is narrow


def test_a_card_sized_heatmap_keeps_the_diagonal():
    """Shrunk for a TensorBoard card, the identity's one-pixel diagonal must still show."""
    image = viz.weight_product_figure(np.eye(784), "identity", max_width=480)
    assert image.shape[1] <= 480
    panel = image[: image.shape[0] // 2, : int(0.75 * image.shape[1])].astype(int)  # raw, on top
    red, green = panel[..., 0], panel[..., 1]
    rows, cols = np.nonzero((red > 90) & (green < 60))  # the 1s: dark red on white (the 0s)
    assert len(rows) > 100
    slope = np.polyfit(cols, rows, 1)[0]
    assert 0.8 < slope < 1.25  # the dark pixels lie on a line of slope one: the diagonal
