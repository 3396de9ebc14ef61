"""The KL-per-unit bars: active and collapsed units in two colours that the legend names (both, even
when one kind has no unit), on whole-number unit ticks."""

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from ae_lab.figures.kl_per_unit import (
    ACTIVE_COLOR,
    INACTIVE_COLOR,
    draw_kl_per_unit,
    kl_per_unit_figure,
)


def drawn(kl, active):
    fig = Figure()
    ax = fig.subplots()
    draw_kl_per_unit(ax, np.asarray(kl, dtype=float), np.asarray(active), threshold=0.01)
    return ax


def test_bars_and_legend_tell_active_from_inactive_units():
    ax = drawn([2.0, 0.001, 1.0], [True, False, True])
    assert [to_rgb(bar.get_facecolor()) for bar in ax.patches] == [
        to_rgb(ACTIVE_COLOR), to_rgb(INACTIVE_COLOR), to_rgb(ACTIVE_COLOR)
    ]  # fmt: skip
    legend = ax.get_legend()
    labels = [text.get_text() for text in legend.get_texts()]
    colours = [to_rgb(handle.get_facecolor()) for handle in legend.legend_handles]
    assert labels == ["active (2)", "inactive (1)"]
    assert colours == [to_rgb(ACTIVE_COLOR), to_rgb(INACTIVE_COLOR)]
    assert colours[0] != colours[1]


@pytest.mark.parametrize("units", [2, 7, 64])
def test_unit_ticks_are_whole_numbers(units):
    ax = drawn(np.ones(units), np.ones(units, dtype=bool))
    ticks = [t for t in ax.get_xticks() if -0.8 <= t <= units - 0.2]
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)


def pixels_of(image: np.ndarray, colour: str) -> np.ndarray:
    target = np.array(to_rgb(colour)) * 255
    return (np.abs(image.astype(float) - target) < 12).all(axis=-1)


def test_the_rendered_legend_shows_both_colours_when_every_unit_is_active():
    image = kl_per_unit_figure(np.array([2.0, 1.0]), np.array([True, True]), threshold=0.01)
    red, blue = pixels_of(image, INACTIVE_COLOR), pixels_of(image, ACTIVE_COLOR)
    assert blue.sum() > 1000  # the bars
    rows, cols = np.nonzero(red)
    assert 20 < len(rows) < 500  # only the legend's swatch: no bar is inactive
    assert rows.max() < image.shape[0] // 2  # in the legend, above the bars' base
