"""Tiny trainings through the real Hydra composition: every model config (discovered in
``conf/model/``) on every MNIST-family dataset writes its checkpoint, metrics, figures and
TensorBoard events; the figures a run draws are the ones its parts call for."""

import inspect
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


def expected_figures(supports: Supports, latent_dim: int, pixels: int = 784) -> list[str]:
    """``<callback>/<figure>`` stems a model with these parts must draw."""
    stems = [
        "reconstructions/reconstructions",
        "latent_space/scatter",
        "latent_interpolation/strip",
        "samples/samples",  # from the prior, or from a density fitted to the training codes
        "traversals/traversals",
    ]
    if supports.prior:
        stems.append("kl_per_unit/kl_per_unit")
    if supports.corruption:
        stems.append("denoising_panel/denoising")
    if supports.linear_map:
        stems.append("weight_product/weight_product")
    if supports.linear_map and latent_dim < pixels:  # a bottleneck: its subspace against PCA's
        stems.append("principal_directions/principal_directions")
    if supports.dense_encoder:
        stems.append("filters/filters")
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
    expected = expected_figures(model.supports, model.latent_dim, math.prod(model.input_shape))
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


def trainer_arguments() -> dict[str, inspect.Parameter]:
    """The arguments of the installed ``lightning.Trainer``."""
    import lightning as L

    return dict(inspect.signature(L.Trainer).parameters)


def test_every_trainer_setting_is_an_argument_of_the_installed_trainer(compose):
    """conf/trainer/ names no argument the installed Lightning lacks, so it runs on every release in
    pyproject.toml's range (.ci/run runs the fast tests on the lower bound too)."""
    from ae_lab.run.checks import HYDRA_KEYS

    assert set(compose([]).trainer) - HYDRA_KEYS <= set(trainer_arguments())


def test_a_trainer_argument_the_config_does_not_list_is_set_with_plus(compose, monkeypatch):
    """A Trainer argument that conf/trainer/ leaves out is set with +trainer.X=VALUE: it passes the
    config checks and reaches the Trainer. So it is for one that a newer Lightning adds (a stand-in:
    the installed Trainer with one argument more) and for each the installed one has beyond the
    config (enable_autolog_hparams on Lightning >= 2.6). trainer.X=VALUE is Hydra's one-line error,
    which says to write +trainer.X=VALUE."""
    import lightning as L
    from hydra.errors import ConfigCompositionException

    from ae_lab.cli import hydra_message
    from ae_lab.run.build import build_trainer
    from ae_lab.run.checks import check_config

    listed = set(compose([]).trainer) | {"logger", "callbacks"}
    unlisted = {
        name: param.default
        for name, param in trainer_arguments().items()
        if name not in listed and isinstance(param.default, bool | int | float | None)
    }
    received = {}

    class NewerTrainer(L.Trainer):
        def __init__(self, *args, shiny_new_flag: bool = False, **kwargs):
            received.update(kwargs, shiny_new_flag=shiny_new_flag)
            super().__init__(*args, **kwargs)

    # the signature the config checks and ae_lab.run.build read: the Trainer's, and the new one
    init = inspect.signature(L.Trainer.__init__)
    new = inspect.Parameter("shiny_new_flag", inspect.Parameter.KEYWORD_ONLY, default=False)
    NewerTrainer.__init__.__signature__ = init.replace(parameters=[*init.parameters.values(), new])
    monkeypatch.setattr(L, "Trainer", NewerTrainer)

    for name, value in {"shiny_new_flag": True, **unlisted}.items():
        override = {None: "null", True: "true", False: "false"}.get(value, value)
        cfg = compose([f"+trainer.{name}={override}"])
        check_config(cfg)
        received.clear()
        assert isinstance(build_trainer(cfg), NewerTrainer)
        assert received[name] == value, name
    with pytest.raises(ConfigCompositionException) as refused:
        compose(["trainer.shiny_new_flag=true"])
    message = hydra_message(refused.value)
    assert "+trainer.shiny_new_flag=true" in message and len(message.splitlines()) == 1
    with pytest.raises(UserError, match="takes no argument 'shiny_new_flg'; did you mean shiny"):
        check_config(compose(["+trainer.shiny_new_flg=true"]))


def test_a_mistyped_trainer_setting_is_one_short_line(compose):
    """trainer.max_epoch=3 is Hydra's error and +trainer.max_epoch=3 the config check's: each one
    line naming the setting meant, not the Trainer's TypeError and its traceback."""
    from hydra.errors import ConfigCompositionException

    from ae_lab.cli import hydra_message
    from ae_lab.run.checks import check_config

    with pytest.raises(ConfigCompositionException) as refused:
        compose(["trainer.max_epoch=3"])
    message = hydra_message(refused.value)
    assert "Did you mean max_epochs?" in message and len(message.splitlines()) == 1
    with pytest.raises(UserError, match="takes no argument 'max_epoch'; did you mean max_epochs?"):
        check_config(compose(["+trainer.max_epoch=3"]))


def test_tensorboard_hparams_are_the_labs(compose, tmp_path, mnist_root):
    """ae_lab writes HParams at the end of a run and TensorBoard shows the first it finds, so
    Lightning must write none at the start, on every release in range: the model's hyperparameters
    are not for the logger, the logger has no default hp_metric, and where the Trainer takes
    enable_autolog_hparams (Lightning >= 2.6) ae_lab.run.build turns it off."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    from ae_lab.run.build import build_trainer

    if "enable_autolog_hparams" in trainer_arguments():
        built = tmp_path / "built"
        assert build_trainer(compose([], built)).enable_autolog_hparams is False
        cfg = compose(["+trainer.enable_autolog_hparams=true"], built)
        assert build_trainer(cfg).enable_autolog_hparams is True  # the user's choice wins
    run(compose(["callbacks=none", f"data.root={mnist_root}", *TINY_RUN[:6]]))
    reader = EventAccumulator(str(tmp_path / "run" / "tensorboard"))  # its event files in turn
    reader.Reload()
    start = plugin_data_pb2.HParamsPluginData.FromString(
        reader.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    ).session_start_info
    assert {"model", "data", "seed", "trainer.max_epochs"} <= set(start.hparams)


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
