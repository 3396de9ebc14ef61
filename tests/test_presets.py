"""Every experiment preset in ``conf/experiment/`` (discovered, never listed) builds its model, its
data module on a tiny fixture in the real layout, and its callbacks, and trains a few steps: a typo
inside a preset fails here, not at run time."""

import shutil
from pathlib import Path

import pytest

from ae_lab.run.train import run
from tests.conftest import CONF, TINY_RUN
from tests.helpers.configs import options
from tests.helpers.faces import make_anime, make_celeba_torchvision

#: A few steps of the preset as it is (its net, latent, likelihood...), on a few images.
SHORT = [*TINY_RUN, "data.batch_size=8", "++model.nll_samples=4", "trainer.limit_train_batches=2",
         "callbacks.latent_interpolation.grid=1"]  # fmt: skip


def dataset_for(target: str, tmp_path: Path, mnist_root: Path) -> list[str]:
    """Overrides pointing the preset's dataset at a tiny fixture of its kind."""
    kind = target.rsplit(".", 1)[-1]
    if kind in ("MNISTDataModule", "FashionMNISTDataModule"):
        return [f"data.root={mnist_root}", "data.download=false"]
    folder = tmp_path / "faces"
    if kind == "CelebADataModule":
        make_celeba_torchvision(folder, n=24)
    elif kind == "AnimeFacesDataModule":
        make_anime(folder, n=24)
    else:
        raise AssertionError(f"no tiny fixture for {target}: add one to this test")
    return [f"data.root={folder}", f"data.cache_dir={tmp_path / 'cache'}"]


def run_preset(compose, tmp_path, mnist_root, preset: str, conf: Path = CONF) -> dict:
    target = compose([f"experiment={preset}"], conf=conf).data._target_
    cfg = compose(
        [f"experiment={preset}", *SHORT, *dataset_for(target, tmp_path, mnist_root)], conf=conf
    )
    return run(cfg)


@pytest.mark.parametrize("preset", options("experiment"))
def test_every_preset_builds_and_trains_a_few_steps(compose, tmp_path, mnist_root, preset):
    metrics = run_preset(compose, tmp_path, mnist_root, preset)
    assert "test/loss" in metrics and (tmp_path / "run" / "metrics.json").is_file()


def test_a_preset_with_a_misspelt_key_fails(compose, tmp_path, mnist_root):
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    text = (conf / "experiment" / "vae_mnist.yaml").read_text()
    (conf / "experiment" / "typo.yaml").write_text(text.replace("  latent_dim: 2", "  betta: 2"))
    with pytest.raises(Exception, match="betta"):
        run_preset(compose, tmp_path, mnist_root, "typo", conf=conf)
