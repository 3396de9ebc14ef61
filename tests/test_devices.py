"""The GPU path, run on the CPU: data kept on the device (``data.on_device=true``), mixed
precision for every model, ``model.compile=true``, and the redraw-on-a-clock progress bar."""

import math

import pytest
import torch

from ae_lab.models import Autoencoder
from ae_lab.run.train import run
from tests.conftest import TINY_RUN
from tests.helpers.configs import options

QUIET = [*TINY_RUN[:8], "callbacks=none", "++model.nll_samples=4"]  # no figure settings


def weights(run_dir) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def test_data_on_the_device_trains_exactly_as_batches_from_the_host(compose, tmp_path, mnist_root):
    common = ["model=vae", f"data.root={mnist_root}", *QUIET, "trainer.max_epochs=2"]
    host = run(compose(common, tmp_path / "host"))
    device = run(compose([*common, "data.on_device=true"], tmp_path / "device"))
    assert host == device
    for name, tensor in weights(tmp_path / "host").items():
        torch.testing.assert_close(weights(tmp_path / "device")[name], tensor)


def test_on_device_batches_are_indexed_where_the_split_lives(compose, tmp_path, mnist_root):
    from hydra.utils import instantiate

    cfg = compose([f"data.root={mnist_root}", "data.on_device=true"])
    datamodule = instantiate(cfg.data)

    class Strategy:
        root_device = torch.device("cpu")

    class Trainer:  # what the datamodule reads of its trainer
        strategy, overfit_batches, global_rank, world_size, current_epoch = Strategy(), 0, 0, 1, 0
        accelerator = None

    datamodule.trainer = Trainer()
    batches = datamodule.train_dataloader()
    assert batches.data is not datamodule.splits["train"]  # its own copy, on the device
    images, labels = next(iter(batches))
    assert images.dtype == torch.uint8 and images.device == Strategy.root_device
    moved = datamodule.transfer_batch_to_device((images, labels), torch.device("cpu"), 0)
    assert moved[0] is images  # already there: nothing copied


@pytest.mark.parametrize("model", options("model"))
def test_bf16_mixed_precision_trains_every_model(compose, tmp_path, mnist_root, model):
    metrics = run(compose([f"model={model}", f"data.root={mnist_root}", *QUIET,
                           "trainer.precision=bf16-mixed"]))  # fmt: skip
    assert all(math.isfinite(v) for v in metrics.values() if v is not None)
    assert metrics["test/loss"] > 0


@pytest.mark.slow
def test_compiled_model_trains_and_its_checkpoint_loads_uncompiled(compose, tmp_path, mnist_root):
    run(compose(["model=vae", "model.compile=true", "model.net.hidden_dims=[32]",
                 f"data.root={mnist_root}", *QUIET]))  # fmt: skip
    again = Autoencoder.load_from_checkpoint(
        tmp_path / "run" / "checkpoints" / "last.ckpt", compile=False
    )
    assert set(again.state_dict()) == set(weights(tmp_path / "run"))
