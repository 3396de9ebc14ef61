"""The convolutional half of the study through the real Hydra composition: conv models on CelebA
(every layout it accepts) and on anime faces, with their face figures."""

import logging
from pathlib import Path

import pytest
from PIL import Image

from ae_lab.run.train import run
from tests.conftest import TINY_RUN
from tests.helpers.faces import (
    add_bad_files,
    make_anime,
    make_celeba_kaggle,
    make_celeba_torchvision,
    make_plain_jpeg_folder,
    partition_sizes,
)

#: Small faces and a small net: the point is the plumbing, not the pictures.
SMALL = ["data.crop=null", "data.size=32", "model.net.channels=[8,16,32]", "model.latent_dim=16",
         "data.val_fraction=0.25"]  # fmt: skip
LAYOUTS = {
    "torchvision": lambda root: make_celeba_torchvision(root, n=40),
    "kaggle": lambda root: make_celeba_kaggle(root, n=40),
    "plain": lambda root: make_plain_jpeg_folder(root, n=40),
}


def face_run(compose, tmp_path: Path, model: str, data: str, root: Path, *extra: str) -> Path:
    overrides = [
        f"model={model}", f"data={data}", f"data.root={root}", f"paths.data_dir={tmp_path / 'data'}",
        *TINY_RUN, "trainer.limit_train_batches=4", "data.batch_size=8", *SMALL, *extra,
    ]  # fmt: skip
    run(compose(overrides, tmp_path / "run"))
    return tmp_path / "run"


def check_face_figures(run_dir: Path, vae: bool) -> None:
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "metrics.json").is_file()
    figures = run_dir / "figures"
    with Image.open(figures / "reconstructions" / "reconstructions_epoch000.png") as image:
        assert image.mode == "RGB"
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 50, "faces should not be flat"
    for gif in ("grid", "pair"):
        with Image.open(figures / "latent_interpolation" / f"{gif}_epoch000.gif") as image:
            assert image.n_frames > 1
    # every model samples: a VAE from its prior beside a fitted density, an AE from the density
    with Image.open(figures / "samples" / "samples_epoch000.png") as image:
        assert image.width > image.height * (1.5 if vae else 0.5)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("model", ["cnn_ae", "cnn_vae"])
def test_conv_models_on_every_celeba_layout(compose, tmp_path, layout, model):
    root = tmp_path / "celeba"
    LAYOUTS[layout](root)
    run_dir = face_run(compose, tmp_path, model, "celeba", root)
    check_face_figures(run_dir, vae=model == "cnn_vae")


@pytest.mark.parametrize("model", ["cnn_ae", "cnn_vae"])
def test_conv_models_on_anime_faces(compose, tmp_path, model):
    root = tmp_path / "anime"
    make_anime(root, n=40)
    run_dir = face_run(compose, tmp_path, model, "anime", root)
    check_face_figures(run_dir, vae=model == "cnn_vae")


def test_full_size_celeba_reconstructs_at_218_by_178(compose, tmp_path):
    root = tmp_path / "celeba"
    make_celeba_torchvision(root, n=24)
    run_dir = face_run(compose, tmp_path, "cnn_vae", "celeba", root, "data.size=null",
                       "trainer.limit_train_batches=2", "callbacks.latent_interpolation.grid=1")  # fmt: skip
    with Image.open(
        run_dir / "figures" / "reconstructions" / "reconstructions_epoch000.png"
    ) as image:
        # the validation images in a row above their reconstructions, 2-pixel padding, after a
        # white margin naming the rows ("input", "reconstruction")
        shown = min(16, partition_sizes(24)[1])
        grid_width = shown * (178 + 2) + 2
        assert image.size[1] == 2 * (218 + 2) + 2
        margin = image.size[0] - grid_width
        assert 40 < margin < 300
        assert image.crop((0, 0, 10, image.size[1])).convert("L").getextrema()[0] > 200


def test_a_folder_of_bad_files_trains_and_reports_what_it_skipped(compose, tmp_path, caplog):
    root = tmp_path / "faces"
    make_plain_jpeg_folder(root, n=40)
    skipped = add_bad_files(root)
    with caplog.at_level(logging.INFO):
        run_dir = face_run(compose, tmp_path, "cnn_vae", "celeba", root)
    summary = [r.getMessage() for r in caplog.records if "not usable images" in r.getMessage()]
    assert len(summary) == 1
    assert f"skipped {len(skipped)} of" in summary[0]
    assert all(name in summary[0] for name in skipped)
    check_face_figures(run_dir, vae=True)
