"""What a user sees first in TensorBoard, read back from a tiny run's event files: the Time Series
page opens on the loss curves (no ``epoch`` card, the final single points after the curves), and
HParams names the run distinctly, records its experiment preset and shows integers as integers."""

from __future__ import annotations

import itertools

import pytest
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

from ae_lab.run import tensorboard as tb
from ae_lab.run.tensorboard_hparams import write_sweep_hparams
from ae_lab.run.tensorboard_logger import curve_tag
from ae_lab.run.train import run
from tests.conftest import TINY_RUN


def _tensorboard_key(tag: str) -> list[tuple[int, object]]:
    """TensorBoard's order of tags (its frontend's ``compareTagNames``): runs of digits compare
    as numbers, ``/`` and digits come before any other character, the rest by character code."""
    key: list[tuple[int, object]] = []
    for digits, run_ in itertools.groupby(tag, str.isdigit):
        text = "".join(run_)
        if digits:
            key.append((0, int(text)))
        else:
            key.extend((0, -1) if c == "/" else (1, ord(c)) for c in text)
    return key


def groups_in_order(tags: list[str]) -> list[str]:
    """The Time Series page's sections, top to bottom: tags sorted as TensorBoard sorts them,
    grouped by the part before the first ``/``."""
    groups: list[str] = []
    for tag in sorted(tags, key=_tensorboard_key):
        if (group := tag.split("/", 1)[0]) not in groups:
            groups.append(group)
    return groups


def test_tensorboard_order_puts_capitals_and_slashes_first():
    assert groups_in_order(["val/loss", "epoch", "final/val/loss", "kl_per_unit/x"]) == [
        "epoch",
        "final",
        "kl_per_unit",
        "val",
    ]  # the old landing view: Lightning's epoch counter, then the single final points
    assert groups_in_order(["a/b10", "a/b9", "Loss/val", "Train/kl"]) == ["Loss", "Train", "a"]
    assert sorted(["a/b10", "a/b9"], key=_tensorboard_key) == ["a/b9", "a/b10"]


def test_curves_are_tagged_loss_first():
    assert curve_tag("train/loss") == "Loss/train"
    assert curve_tag("train/loss_epoch") == "Loss/train_epoch"
    assert curve_tag("val/loss") == "Loss/val"
    assert curve_tag("train/kl") == "Train/kl" and curve_tag("val/psnr") == "Val/psnr"
    assert curve_tag("epoch") is None
    assert curve_tag("my_metric") == "my_metric" and curve_tag("other/x") == "other/x"


def test_a_sweep_jobs_label_is_short_and_its_trial_id_unique(tmp_path):
    overrides = ["model=vae", "model.beta=2", "data.root=/data", "trainer.max_epochs=3"]
    assert tb.short_name(overrides, {"model", "model.beta"}) == "beta=2,model=vae"
    assert tb.short_name(["model.beta=2", "data.beta=1"], None) == "data.beta=1,model.beta=2"
    sweep = tmp_path / "outputs" / "train" / "multiruns" / "2026-01-01_00-00-00"
    trial = tb.trial_id(sweep / "3", tmp_path / "outputs", "job3 beta=2,model=vae", sweep)
    assert trial == "job3 beta=2,model=vae · train/multiruns/2026-01-01_00-00-00"
    single = tmp_path / "outputs" / "vae_mnist" / "runs" / "2026-01-01_00-00-00"
    assert tb.trial_id(single, tmp_path / "outputs") == "2026-01-01_00-00-00 · vae_mnist/runs"


def test_hparams_keep_integers_as_integers_and_leave_out_an_unchosen_preset():
    cfg = OmegaConf.create(
        {"model": {"latent_dim": 32, "optimizer": {"lr": 0.001}}, "data": {"batch_size": 128},
         "seed": 0, "trainer": {"max_epochs": 3, "enable_progress_bar": False}}
    )  # fmt: skip
    choices = {"model": "ae", "data": "mnist", "experiment": None}
    params = tb.hparams(cfg, ["trainer.enable_progress_bar=false"], choices)
    assert "experiment" not in params  # none chosen: an empty cell, not "null"
    assert params["model.latent_dim"] == "32" and params["data.batch_size"] == "128"
    assert params["seed"] == "0" and params["model.optimizer.lr"] == 0.001
    assert params["trainer.enable_progress_bar"] is False
    assert tb.hparams(cfg, [], {**choices, "experiment": "vae_mnist"})["experiment"] == "vae_mnist"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, mnist_root):
    """A one-epoch VAE run of the ``vae_mnist`` preset, with its figures: its TensorBoard events."""
    from ae_lab.compose import compose_config

    out = tmp_path_factory.mktemp("landing")
    cfg = compose_config(
        ["experiment=vae_mnist", f"data.root={mnist_root}", f"paths.log_dir={out}",
         "measures.probes=false", "callbacks.traversals.num_points=64", *TINY_RUN],
        out / "vae_mnist" / "runs" / "stamp",
    )  # fmt: skip
    try:
        run(cfg)
    finally:  # as the compose fixture leaves Hydra
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None
    events = EventAccumulator(str(out / "vae_mnist" / "runs" / "stamp" / "tensorboard"))
    events.Reload()
    return events


def test_the_time_series_page_opens_on_the_loss_curves(tiny_run):
    tags = tiny_run.Tags()
    scalars, images = tags["scalars"], tags["images"]
    assert "epoch" not in scalars and not any(t.startswith("train/") for t in scalars)
    assert {"Loss/train", "Loss/train_epoch", "Loss/val", "Train/kl", "Val/psnr"} <= set(scalars)
    assert "kl_per_unit/kl_per_unit" in images and "reconstructions/reconstructions" in images
    groups = groups_in_order(scalars + images)
    assert groups[:3] == ["Loss", "Train", "Val"]  # TensorBoard opens the first two
    assert groups.index("final") > groups.index("Val") and groups.index("test") > 2
    assert len(tiny_run.Scalars("Loss/val")) == 1  # one validation, no final point on the curve


def hparams_plugin(
    events: EventAccumulator, start: bool = True
) -> tuple[api_pb2.Experiment, object]:
    content = events.PluginTagToContent("hparams")
    data = plugin_data_pb2.HParamsPluginData
    experiment = data.FromString(content["_hparams_/experiment"]).experiment
    if not start:
        return experiment, None
    return experiment, data.FromString(content["_hparams_/session_start_info"]).session_start_info


def test_hparams_name_the_run_and_hold_the_preset_and_integers(tiny_run):
    experiment, start = hparams_plugin(tiny_run)
    values = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in
              start.hparams.items()}  # fmt: skip
    assert values["experiment"] == "vae_mnist" and values["model"] == "vae"
    assert values["data.batch_size"] == "32" and values["model.latent_dim"] == "2"
    assert values["trainer.max_epochs"] == "1" and values["model.optimizer.lr"] == 1e-3
    assert values["trainer.enable_progress_bar"] is False
    assert start.group_name == "stamp · vae_mnist/runs"  # the trial ID, its distinct part first
    types = {info.name: info.type for info in experiment.hparam_infos}
    assert types["data.batch_size"] == api_pb2.DATA_TYPE_STRING
    assert types["model.optimizer.lr"] == api_pb2.DATA_TYPE_FLOAT64
    assert not any(info.differs for info in experiment.hparam_infos)  # one run: nothing swept
    metrics = [m.name.tag for m in experiment.metric_infos]
    assert metrics[:3] == ["test/loss", "final/val/loss", "test/nll"]
    for tag in metrics:  # every column of the table has its number
        assert len(tiny_run.Scalars(tag)) == 1


def read_hparams(folder) -> EventAccumulator:
    events = EventAccumulator(str(folder))
    events.Reload()
    return events


def test_a_sweeps_table_has_the_columns_of_all_its_jobs(tmp_path):
    """Each job writes its row only; the sweep writes the columns: every job's settings (those
    whose values differ marked so) and every metric any job has, the VAE's test/nll included."""
    sweep = tmp_path / "sweep"
    jobs = {
        "0": ({"model": "ae", "data": "mnist", "model.latent_dim": "32"}, {"test/loss": 3.0}),
        "1": ({"model": "vae", "data": "mnist", "model.latent_dim": "32", "model.beta": 2.0},
              {"test/loss": 4.0, "test/nll": 90.0, "final/val/loss": 4.5}),
    }  # fmt: skip
    for job, (params, metrics) in jobs.items():
        tb.write_hparams(sweep / job / "tensorboard", params, metrics, 7, f"job{job}", False)
        row = read_hparams(sweep / job / "tensorboard").PluginTagToContent("hparams")
        assert "_hparams_/experiment" not in row and "_hparams_/session_start_info" in row
    assert write_sweep_hparams(sweep) == sweep / "0" / "tensorboard"  # beside the first row
    experiment, _ = hparams_plugin(read_hparams(sweep / "0" / "tensorboard"), start=False)
    assert [m.name.tag for m in experiment.metric_infos] == ["test/loss", "final/val/loss",
                                                             "test/nll"]  # fmt: skip
    infos = {info.name: info for info in experiment.hparam_infos}
    assert {name for name, info in infos.items() if info.differs} == {"model", "model.beta"}
    assert infos["model.latent_dim"].type == api_pb2.DATA_TYPE_STRING
    assert infos["model.beta"].type == api_pb2.DATA_TYPE_FLOAT64
    assert write_sweep_hparams(tmp_path / "empty") is None  # no job wrote a row
