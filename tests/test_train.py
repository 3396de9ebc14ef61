"""Tiny trainings through the real Hydra composition: every model on every MNIST-family dataset
writes its checkpoint, metrics, figures and TensorBoard events."""

import json
import math
from pathlib import Path

import pytest
from PIL import Image

from ae_lab.errors import UserError
from ae_lab.train import run
from tests.conftest import CONF, TINY_RUN

DENSE = ["linear_ae", "ae", "sparse_ae", "contractive_ae", "denoising_ae", "vae"]

#: Figures each model must draw, beyond reconstructions and the interpolation.
EXPECTED = {
    "linear_ae": ["weight_product/weight_product"],
    "denoising_ae": ["denoising_panel/denoising"],
    "vae": ["latent_space/manifold", "samples/samples"],
    "cnn_vae": ["samples/samples"],
}


def check_run_directory(run_dir: Path, model: str) -> dict:
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("val/loss", "test/loss", "val/psnr", "test/psnr"):
        assert isinstance(metrics[key], float) and math.isfinite(metrics[key])
    assert metrics["val/psnr"] > 0  # reconstructions in [0, 1] of images in [0, 1]
    figures = run_dir / "figures"
    expected = [
        "reconstructions/reconstructions",
        "latent_space/scatter",
        "latent_interpolation/strip",
    ]
    for stem in expected + EXPECTED.get(model, []):
        (png,) = figures.glob(f"{stem}_epoch000.png")
        with Image.open(png) as image:
            image.load()
            assert image.width > 10 and image.height > 10
    for gif in ("grid", "pair"):
        with Image.open(figures / "latent_interpolation" / f"{gif}_epoch000.gif") as image:
            assert image.n_frames > 1
    return metrics


@pytest.mark.parametrize("model", DENSE)
@pytest.mark.parametrize("data", ["mnist", "fashion_mnist"])
def test_every_dense_model_trains_on_every_mnist_dataset(
    compose, tmp_path, mnist_root, fashion_root, model, data
):
    root = mnist_root if data == "mnist" else fashion_root
    cfg = compose([f"model={model}", f"data={data}", f"data.root={root}", *TINY_RUN])
    metrics = run(cfg)
    on_disk = check_run_directory(tmp_path / "run", model)
    assert on_disk == metrics
    if model == "linear_ae":
        assert metrics["val/identity_error"] >= 0 and "test/identity_error" in metrics


@pytest.mark.parametrize("model", ["cnn_ae", "cnn_vae"])
def test_conv_models_train_on_mnist(compose, tmp_path, mnist_root, model):
    # batch norm needs a few batches of running statistics before eval-mode figures vary
    cfg = compose(
        [f"model={model}", f"data.root={mnist_root}", *TINY_RUN, "trainer.limit_train_batches=8"]
    )
    run(cfg)
    check_run_directory(tmp_path / "run", model)


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


@pytest.mark.parametrize("preset", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_every_experiment_preset_composes(compose, preset):
    cfg = compose([f"experiment={preset}"])
    assert cfg.task_name == preset
    assert cfg.model._target_.startswith("ae_lab.models.")
    assert cfg.data._target_.startswith("ae_lab.data.")


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
