"""Tiny trainings through the real Hydra composition: every model config (discovered in
``conf/model/``) on every MNIST-family dataset writes its checkpoint, metrics, figures and
TensorBoard events; the figures a run draws are the ones its parts call for."""

import json
import math
import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from ae_lab.errors import UserError
from ae_lab.models import Supports
from ae_lab.run.build import no_nvml_probe
from ae_lab.run.train import run
from tests.conftest import TINY_RUN
from tests.helpers.configs import options


def expected_figures(supports: Supports, latent_dim: int) -> list[str]:
    """``<callback>/<figure>`` stems a model with these parts must draw."""
    stems = [
        "reconstructions/reconstructions",
        "latent_space/scatter",
        "latent_interpolation/strip",
    ]
    if supports.prior:
        stems += ["samples/samples", "kl_per_unit/kl_per_unit"]
    if supports.corruption:
        stems.append("denoising_panel/denoising")
    if supports.linear_map:
        stems.append("weight_product/weight_product")
    if latent_dim == 2:
        stems.append("latent_space/manifold")
    return stems


def check_run_directory(run_dir: Path, epoch: int = 0) -> dict:
    """The run's files, and every figure its model's parts call for (and no others)."""
    from ae_lab.models import Autoencoder

    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("val/loss", "test/loss", "val/psnr", "test/psnr", "test/ssim"):
        assert isinstance(metrics[key], float) and math.isfinite(metrics[key]), key
    assert metrics["val/psnr"] > 0  # reconstructions in [0, 1] of images in [0, 1]
    assert -1 <= metrics["test/ssim"] <= 1
    model = Autoencoder.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    if model.supports.prior:
        assert metrics["test/nll"] <= -metrics["test/elbo"]
        assert 0 <= metrics["test/active_units"] <= model.latent_dim
    expected = expected_figures(model.supports, model.latent_dim)
    drawn = sorted(
        f"{png.parent.name}/{png.name.rsplit('_epoch', 1)[0]}"
        for png in (run_dir / "figures").glob(f"*/*_epoch{epoch:03d}.png")
    )
    assert drawn == sorted(expected)
    for stem in expected:
        with Image.open(run_dir / "figures" / f"{stem}_epoch{epoch:03d}.png") as image:
            image.load()
            assert image.width > 10 and image.height > 10
    # the sweep report's strip: 8 validation images above their reconstructions, 2-pixel padding
    _, height, width = model.input_shape
    with Image.open(run_dir / "report" / "reconstructions.png") as strip:
        assert strip.size == (8 * (width + 2) + 2, 2 * (height + 2) + 2)
    for gif in ("grid", "pair"):
        with Image.open(run_dir / f"figures/latent_interpolation/{gif}_epoch{epoch:03d}.gif") as im:
            assert im.n_frames > 1
    return metrics


@pytest.mark.parametrize("model", options("model"))
@pytest.mark.parametrize("data", ["mnist", "fashion_mnist"])
def test_every_model_trains_on_every_mnist_dataset(
    compose, tmp_path, mnist_root, fashion_root, model, data
):
    root = mnist_root if data == "mnist" else fashion_root
    # batch norm (conv nets) needs a few batches of running statistics before figures vary
    cfg = compose([f"model={model}", f"data={data}", f"data.root={root}", *TINY_RUN,
                   "trainer.limit_train_batches=4", "++model.nll_samples=8"])  # fmt: skip
    metrics = run(cfg)
    on_disk = check_run_directory(tmp_path / "run")
    assert on_disk == metrics
    if model == "linear_ae":
        assert metrics["val/identity_error"] >= 0 and "test/identity_error" in metrics


@pytest.mark.parametrize(
    "parts",
    [
        ["model=vae", "model/corruption=masking"],  # a denoising VAE
        ["model=cnn_ae", "model/penalty=l1"],  # a sparse conv AE
        ["model=vae", "model/penalty=l1"],  # a sparse VAE
        ["model=cnn_vae", "model.beta=4"],  # a beta-VAE
        ["model=cnn_vae", "model/corruption=salt_and_pepper", "model/penalty=contractive"],
    ],
    ids=lambda parts: " ".join(parts),
)
def test_parts_combine_and_draw_the_figures_they_call_for(compose, tmp_path, mnist_root, parts):
    cfg = compose([*parts, f"data.root={mnist_root}", *TINY_RUN, "++model.nll_samples=8",
                   "trainer.limit_train_batches=4", "model.latent_dim=8"])  # fmt: skip
    metrics = run(cfg)
    check_run_directory(tmp_path / "run")
    if "model/penalty=l1" in parts:
        assert 0 <= metrics["val/active"] <= 1


def test_no_figures_with_callbacks_none(compose, tmp_path, mnist_root):
    run(compose(["callbacks=none", f"data.root={mnist_root}", *TINY_RUN[:6]]))
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "run" / "figures").exists()


def test_a_finished_run_is_never_overwritten(compose, tmp_path, mnist_root):
    cfg = compose(["callbacks=none", f"data.root={mnist_root}", *TINY_RUN[:6]])
    run(cfg)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("*") if p.is_file()}
    with pytest.raises(UserError, match="already holds a run"):
        run(cfg)
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("*") if p.is_file()}
    assert before == after


def test_resume_from_a_checkpoint_into_a_new_directory(compose, tmp_path, mnist_root):
    common = ["callbacks=none", f"data.root={mnist_root}", *TINY_RUN[1:6]]
    run(compose(["trainer.max_epochs=1", *common], tmp_path / "first"))
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    run(compose(["trainer.max_epochs=2", f"ckpt_path={last}", *common], tmp_path / "second"))
    assert (tmp_path / "second" / "checkpoints" / "best-epoch001.ckpt").is_file()


def test_trainer_config_names_every_trainer_argument(compose):
    """So that any lightning.Trainer argument can be set as trainer.X=VALUE."""
    import inspect

    import lightning as L

    cfg = compose([])
    arguments = set(inspect.signature(L.Trainer.__init__).parameters) - {
        "self",
        "logger",
        "callbacks",
    }
    assert arguments <= set(cfg.trainer)


@pytest.mark.slow
def test_trivial_identity_reaches_the_identity_on_held_out_digits(compose, tmp_path, real_mnist):
    """Experiment 1 on real digits: identity error <= 0.02 on the validation and test images."""
    cfg = compose(
        [
            "experiment=trivial_identity",
            f"data.root={real_mnist}",
            "trainer.enable_progress_bar=false",
        ]
    )
    metrics = run(cfg)
    assert metrics["val/identity_error"] <= 0.02
    assert metrics["test/identity_error"] <= 0.02
    assert metrics["val/diag_mean"] > 0.85


def test_interpolation_grid_shrinks_to_a_small_validation_set(compose, tmp_path, mnist_root):
    """6 validation images hold 3 pairs: a 1x1 grid instead of the 4x4 asked for, not a crash."""
    overrides = [f"data.root={mnist_root}", "data.val_fraction=0.01", *TINY_RUN]
    run(compose([*overrides, "callbacks.latent_interpolation.grid=4",
                 "callbacks.latent_interpolation.frame_ms=120"]))  # fmt: skip
    with Image.open(tmp_path / "run/figures/latent_interpolation/grid_epoch000.gif") as gif:
        assert gif.size == (2 * 28, 2 * 28) and gif.n_frames > 1  # one cell, enlarged twice
        assert gif.info["duration"] == 120  # the configured frame duration reaches the file


@pytest.mark.parametrize("gpu", [False, True])
def test_the_nvml_probe_is_off_only_without_a_gpu(gpu, monkeypatch):
    """Lightning's import turns on torch's NVML-based CUDA check, which every optimizer step then
    runs (and fails, without a driver); the lab turns it off where there is no GPU."""
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    no_nvml_probe()
    assert os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == ("1" if gpu else "0")
