"""TensorBoard's Projector: the end of a run and ``eval.py`` write the model's validation codes, a
sprite of their images and their labels with class names; a run without TensorBoard skips it."""

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from PIL import Image
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

from ae_lab.errors import RunInterrupted, UserError
from ae_lab.figures.projector import (
    SPRITE_MAX,
    TAG,
    label_metadata,
    sprite_side,
    thumbnails,
)
from ae_lab.models import Autoencoder
from ae_lab.run.build import prepare_data
from ae_lab.run.checks import check_config
from ae_lab.run.train import run
from tests.conftest import TINY_RUN
from tests.test_eval import evaluate

POINTS = 50
FASHION_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def read_embedding(logdir: Path) -> dict:
    """The one embedding listed in ``logdir/projector_config.pbtxt``, its files read."""
    config = text_format.Parse((logdir / "projector_config.pbtxt").read_text(), ProjectorConfig())
    (info,) = config.embeddings
    tensors = np.loadtxt(logdir / info.tensor_path, delimiter="\t", ndmin=2, dtype=np.float32)
    rows = (logdir / info.metadata_path).read_text().splitlines()
    with Image.open(logdir / info.sprite.image_path) as sprite:
        pixels = np.asarray(sprite.convert("RGB"))
    return {"info": info, "tensors": tensors, "metadata": rows, "sprite": pixels}


def test_a_run_and_eval_write_the_models_codes_for_the_projector(compose, tmp_path, fashion_root):
    cfg = compose(["model=ae", "data=fashion_mnist", f"data.root={fashion_root}", *TINY_RUN,
                   f"callbacks.projector.num_points={POINTS}"])  # fmt: skip
    run(cfg)
    run_dir = tmp_path / "run"
    written = read_embedding(run_dir / "tensorboard")
    info = written["info"]
    assert info.tensor_name.startswith(f"{TAG}:") and list(info.sprite.single_image_dim) == [28, 28]

    # the values are the final model's codes of the first POINTS validation images (seed 0)
    data = prepare_data(cfg)
    images, labels = data.sample_batch(POINTS, split="val", seed=0)
    model = Autoencoder.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt").eval()
    with torch.no_grad():
        codes = model.encode(images).numpy()
    assert written["tensors"].shape == (POINTS, model.latent_dim)
    np.testing.assert_allclose(written["tensors"], codes, rtol=1e-5, atol=1e-6)

    # a header, then each image's label and class name
    header, *rows = written["metadata"]
    assert header == "label\tclass" and len(rows) == POINTS
    assert rows == [f"{int(y)}\t{FASHION_NAMES[int(y)]}" for y in labels]
    assert {row.split("\t")[1] for row in rows} <= set(FASHION_NAMES) and len(set(rows)) > 1

    # the sprite: 8x8 cells of 28 px (ceil(sqrt(50)) a row), row-major, each an image as it is
    sprite = written["sprite"]
    assert sprite.shape == (8 * 28, 8 * 28, 3)
    for i in (0, 1, 9, POINTS - 1):
        row, col = divmod(i, 8)
        cell = sprite[28 * row : 28 * row + 28, 28 * col : 28 * col + 28, 0].astype(int)
        np.testing.assert_allclose(cell, (images[i, 0].numpy() * 255).astype(int), atol=1)
    assert (sprite[28 * 6 + 28 :, 28 * 2 :] == 0).all()  # after the 50th cell: empty

    # eval.py on the same weights: the same embedding in its own TensorBoard folder
    out = run_dir / "eval" / "now"
    evaluate(run_dir / "checkpoints" / "last.ckpt", out=out)
    again = read_embedding(out / "tensorboard")
    assert again["info"].tensor_name == f"{TAG}:00000"
    np.testing.assert_array_equal(again["tensors"], written["tensors"])
    assert again["metadata"] == written["metadata"]
    np.testing.assert_array_equal(again["sprite"], sprite)
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))  # a run TensorBoard lists


@pytest.mark.parametrize("logger", ["none", "csv"])
def test_a_run_without_tensorboard_skips_it_with_one_line(
    compose, tmp_path, mnist_root, caplog, logger
):
    cfg = compose(["model=ae", f"logger={logger}", f"data.root={mnist_root}", *TINY_RUN,
                   f"callbacks.projector.num_points={POINTS}"])  # fmt: skip
    with caplog.at_level(logging.INFO):
        metrics = run(cfg)
    assert metrics["test/loss"] > 0
    said = [r.getMessage() for r in caplog.records if "[projector]" in r.getMessage()]
    assert said == [
        "[projector] not written: the run has no TensorBoard logger (logger=tensorboard)"
    ]
    assert not list((tmp_path / "run").rglob("projector_config.pbtxt"))


def test_a_run_stopped_by_a_signal_writes_no_embedding(compose, tmp_path, mnist_root):
    stop = ["+callbacks.stop._target_=tests.helpers.callbacks.SignalAt", "+callbacks.stop.epoch=0",
            "+callbacks.stop.batch=1"]  # fmt: skip
    cfg = compose(["model=ae", f"data.root={mnist_root}", *TINY_RUN, *stop,
                   f"callbacks.projector.num_points={POINTS}"])  # fmt: skip
    with pytest.raises(RunInterrupted):
        run(cfg)
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert not list((tmp_path / "run").rglob("projector_config.pbtxt"))


def test_sprite_cells_are_square_and_the_sprite_fits_tensorboards_limit():
    assert sprite_side((28, 28), 1000, 64) == 28  # never enlarged
    assert sprite_side((218, 178), 1000, 64) == 64  # 32 a row: 2048 px
    side = sprite_side((218, 178), 5000, 256)  # 71 a row
    assert side == SPRITE_MAX // 71 and side * 71 <= SPRITE_MAX
    faces = torch.zeros(2, 3, 218, 178)
    faces[:, :, 20:198, :] = 1.0  # the centred 178x178 square is white, the rest black
    small = thumbnails(faces, 64)
    assert small.shape == (2, 3, 64, 64) and torch.allclose(small, torch.ones_like(small))
    digits = torch.rand(3, 1, 28, 28)
    assert torch.equal(thumbnails(digits, 28), digits)


def test_metadata_names_classes_where_the_data_has_them():
    labels = torch.tensor([2, 0, 2])
    assert label_metadata(labels, ("a", "b", "c")) == (
        [[2, "c"], [0, "a"], [2, "c"]],
        ["label", "class"],
    )
    assert label_metadata(labels, ()) == ([2, 0, 2], None)
    assert label_metadata(torch.full((3,), -1), ("a",)) == (None, None)  # unlabelled faces


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("callbacks.projector.thumbnail=4", "callbacks.projector.thumbnail=4: must be >= 8"),
        ("callbacks.projector.num_points=10000", "callbacks.projector.num_points=10000: must be"),
    ],
)
def test_sizes_are_bounded_before_training(compose, override, message):
    with pytest.raises(UserError, match=re.escape(message)):
        check_config(compose([override]))
