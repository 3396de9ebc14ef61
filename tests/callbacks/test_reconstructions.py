"""The reconstructions mosaic: inputs above their reconstructions, each row named on its left."""

import numpy as np
import torch

from ae_lab.figures import Reconstructions, drawing


class Inverting(torch.nn.Module):
    """A stand-in model whose reconstruction is the negative of its input."""

    device = torch.device("cpu")

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return 1 - images


class Squares:
    """A stand-in datamodule: black 28x28 images with a white square."""

    def sample_batch(self, n: int, split: str, seed: int):
        images = torch.zeros(n, 1, 28, 28)
        images[:, :, 8:20, 8:20] = 1.0
        return images, torch.zeros(n, dtype=torch.long)


def dark_columns(band: np.ndarray) -> np.ndarray:
    """The columns of ``band`` that hold text: pixels much darker than the white margin."""
    return np.nonzero((band.mean(axis=-1) < 128).any(axis=0))[0]


def test_rows_are_labelled_input_and_reconstruction():
    image = Reconstructions(num_examples=4).draw(Inverting(), Squares())["reconstructions"]
    inputs = Squares().sample_batch(4, "val", 0)[0]
    grid = drawing.image_grid(torch.cat([inputs, 1 - inputs]), nrow=4)  # inputs, then outputs
    height, width = grid.shape[:2]
    margin = image.shape[1] - width
    assert image.shape[0] == height and margin > 40  # room for "reconstruction" on the left
    assert (image[:, margin:] == grid).all()  # the mosaic itself unchanged, on the right
    labels = image[:, :margin]
    top, bottom = dark_columns(labels[: height // 2]), dark_columns(labels[height // 2 :])
    assert len(top) > 10 and len(bottom) > 10  # text beside each row
    assert bottom.min() < top.min()  # "reconstruction", the longer word, beside the second row
    assert abs(int(bottom.max()) - int(top.max())) <= 2  # both end at the mosaic's edge


def test_label_rows_splits_the_height_between_the_labels():
    image = np.zeros((90, 40, 3), np.uint8)
    labelled = drawing.label_rows(image, ["a", "bb", "ccc"])
    assert labelled.shape[0] == 90 and labelled.shape[1] > 40
    margin = labelled[:, : labelled.shape[1] - 40]
    for row in range(3):  # each label inside its own third
        band = margin[row * 30 : (row + 1) * 30]
        assert (band.mean(axis=-1) < 128).any()
    assert (labelled[:, -40:] == 0).all()
