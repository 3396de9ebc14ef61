"""Shared fixtures: synthetic datasets in the real layouts, the real ones when present, and the
project's Hydra config composed exactly as ``train.py`` composes it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ae_lab.compose import CONF, compose_config
from tests.helpers.mnist import write_mnist

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("PYTHONHASHSEED", "0")

# Under pytest-xdist (pytest -n N), the workers share the machine's cores: each worker's torch,
# and the train.py processes it starts, get their share instead of all of them.
if workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")):
    _share = str(max(1, (os.cpu_count() or 1) // workers))
    os.environ.setdefault("OMP_NUM_THREADS", _share)
    os.environ.setdefault("MKL_NUM_THREADS", _share)


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory) -> Path:
    """A synthetic MNIST in torchvision's raw layout: ``<root>/MNIST/raw/*-ubyte``."""
    root = tmp_path_factory.mktemp("mnist")
    write_mnist(root / "MNIST" / "raw")
    return root


@pytest.fixture(scope="session")
def fashion_root(tmp_path_factory) -> Path:
    """A synthetic Fashion-MNIST as Debian ships it: gzip files directly in the folder."""
    root = tmp_path_factory.mktemp("fashion")
    write_mnist(root, gz=True)
    return root


#: Where the tests look for real MNIST (a folder holding ``MNIST/raw/``) before ``../shared``.
MNIST_ENV = "AE_LAB_MNIST_ROOT"


@pytest.fixture(scope="session")
def real_mnist() -> Path:
    """Real MNIST digits: ``$AE_LAB_MNIST_ROOT``, else ``../shared/data/mnist10k`` beside the
    checkout; the test is skipped, saying how to get them, when neither holds ``MNIST/raw/``."""
    root = Path(os.environ.get(MNIST_ENV) or SHARED_DATA / "mnist10k")
    if not (root / "MNIST" / "raw").is_dir():
        pytest.skip(
            f"real MNIST not found in {root}: download it once with `.venv/bin/python -c "
            f"\"import torchvision; torchvision.datasets.MNIST('DIR', download=True)\"` and set "
            f"{MNIST_ENV}=DIR"
        )
    return root


#: Overrides that make a run take seconds: two batches, small figures, no progress bar.
TINY_RUN = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=1",
    "data.batch_size=32",
    "callbacks.latent_interpolation.grid=2",
    "callbacks.latent_interpolation.steps=5",
    "callbacks.latent_space.num_points=64",
    "callbacks.latent_space.manifold_size=4",
    "callbacks.samples.num_examples=4",
]


@pytest.fixture
def compose(tmp_path):
    """``compose(overrides) -> cfg`` whose run directory is ``tmp_path / "run"``."""
    made = []

    def _compose(
        overrides: list[str], output_dir: Path | None = None, conf: Path = CONF
    ) -> DictConfig:
        cfg = compose_config(overrides, output_dir or tmp_path / "run", conf)
        made.append(cfg)
        return cfg

    yield _compose
    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None
