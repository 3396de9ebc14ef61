"""What a sweep leaves in TensorBoard, read back from its event files: runs named by what was
swept, HParams rows named by job with the settings and the final metrics, no post-training point on
the validation curves, a learning-rate curve and an epoch-level training loss, card-sized images,
animated GIFs, and the config and command line as text."""

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from tests.conftest import TINY_RUN
from tests.test_cli import train

EPOCHS = 3


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory, mnist_root):
    logs = tmp_path_factory.mktemp("logs")
    short = [o for o in TINY_RUN if not o.startswith("trainer.max_epochs")]
    result = train("-m", "model=ae,vae", "model.latent_dim=2", f"data.root={mnist_root}",
                   f"paths.log_dir={logs}", *short, f"trainer.max_epochs={EPOCHS}",
                   "++model.nll_samples=4")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (folder,) = (logs / "train" / "multiruns").iterdir()
    return folder


@pytest.fixture(scope="module")
def sweep(sweep_dir):
    runs = {}
    for job in ("0", "1"):
        (run,) = (sweep_dir / job / "tensorboard").iterdir()
        events = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0})
        events.Reload()
        runs[run.name] = events
    return runs


@pytest.mark.slow
def test_sweep_runs_are_named_by_what_was_swept(sweep):
    assert sorted(sweep) == ["model=ae", "model=vae"]


@pytest.mark.slow
def test_hparams_hold_the_settings_and_the_final_metrics(sweep):
    for name, events in sweep.items():
        content = events.PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(
            content["_hparams_/session_start_info"]
        ).session_start_info
        params = {k: v.string_value or v.number_value for k, v in start.hparams.items()}
        assert params["model"] == name.split("=")[1] and params["data"] == "mnist"
        assert params["model.latent_dim"] == "2" and params["model.optimizer.lr"] == 1e-3
        assert {"data.batch_size", "seed", "trainer.max_epochs"} <= set(params)
        if name == "model=vae":  # the sweep's columns are beside job 0's row
            assert "_hparams_/experiment" not in content
        metrics = {t for t in events.Tags()["scalars"] if t.startswith(("test/", "final/"))}
        assert {"test/loss", "test/psnr", "test/ssim", "final/val/loss"} <= metrics
        assert ("test/nll" in metrics) == (name == "model=vae")
        for tag in metrics:  # each metric has its value, so the table is filled
            assert len(events.Scalars(tag)) == 1


@pytest.mark.slow
def test_the_sweeps_table_has_every_jobs_columns(sweep):
    content = sweep["model=ae"].PluginTagToContent("hparams")["_hparams_/experiment"]
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content).experiment
    metrics = [m.name.tag for m in experiment.metric_infos]
    assert metrics[:3] == ["test/loss", "final/val/loss", "test/nll"]  # the VAE's, beside the AE
    assert {i.name for i in experiment.hparam_infos if i.differs} == {"model"}


@pytest.mark.slow
def test_hparams_rows_are_named_by_job_and_what_was_swept(sweep):
    for name, events in sweep.items():
        content = events.PluginTagToContent("hparams")
        data = plugin_data_pb2.HParamsPluginData
        trial = data.FromString(content["_hparams_/session_start_info"]).session_start_info
        job = "0" if name == "model=ae" else "1"
        assert trial.group_name.startswith(f"job{job} {name} · train/multiruns/")


@pytest.mark.slow
def test_curves_end_with_training(sweep):
    for events in sweep.values():
        val = [e.step for e in events.Scalars("Loss/val")]  # val/loss, tagged to sort first
        train_steps = [e.step for e in events.Scalars("Loss/train")]
        assert len(val) == EPOCHS  # one point per validation, none after training
        assert max(val) <= max(train_steps) + 1
        assert len(events.Scalars("Loss/train_epoch")) == EPOCHS
        assert [e.value for e in events.Scalars("Train/lr")] == pytest.approx(
            [1e-3] * len(train_steps)
        )


@pytest.mark.slow
def test_images_fit_a_card_and_interpolations_play(sweep):
    for events in sweep.values():
        tags = events.Tags()["images"]
        assert "latent_interpolation/grid" in tags and "reconstructions/reconstructions" in tags
        for tag in tags:
            images = events.Images(tag)
            assert len(images) > 1  # more than one frame to scrub, even in a 3-epoch run
            assert all(0 < i.width <= 480 for i in images)
        for tag in ("latent_interpolation/grid", "latent_interpolation/pair"):
            assert events.Images(tag)[-1].encoded_image_string[:4] == b"GIF8"


@pytest.mark.slow
def test_the_config_and_command_line_are_text(sweep):
    for name, events in sweep.items():
        command = events.Tensors("run/command/text_summary")[0].tensor_proto.string_val[0].decode()
        config = events.Tensors("run/config/text_summary")[0].tensor_proto.string_val[0].decode()
        assert command.strip().startswith("python train.py") and name in command
        assert "_target_: ae_lab.models.Autoencoder" in config
