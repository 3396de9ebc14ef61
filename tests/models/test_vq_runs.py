"""The vq bottleneck in whole runs: the preset trains on tiny data and its loss falls, with the
codebook's perplexity and usage logged each epoch; and it trains as a denoising conv model."""

import csv
import json
import math

from ae_lab.models import Autoencoder
from ae_lab.run.train import run
from tests.conftest import TINY_RUN

EPOCHS = 3


def scalars(run_dir, name: str) -> list[float]:
    """The values logged as ``name``, in order, from the run's CSV log."""
    with open(run_dir / "csv" / "metrics.csv", newline="") as table:
        return [float(row[name]) for row in csv.DictReader(table) if row.get(name)]


def test_the_preset_trains_and_logs_its_codebook_usage(compose, tmp_path, mnist_root):
    short = [o for o in TINY_RUN if not o.startswith(("trainer.max_epochs", "callbacks."))]
    cfg = compose(["model=vq_vae", f"data.root={mnist_root}", *short,
                   f"trainer.max_epochs={EPOCHS}", "trainer.limit_train_batches=8",
                   "callbacks=none", "logger=csv"])  # fmt: skip
    metrics = run(cfg)
    losses = scalars(tmp_path / "run", "train/loss_epoch")
    assert len(losses) == EPOCHS and losses[-1] < 0.7 * losses[0], losses
    for stage in ("train", "val"):
        perplexities = scalars(tmp_path / "run", f"{stage}/vq_perplexity")
        usages = scalars(tmp_path / "run", f"{stage}/codebook_usage")
        assert len(perplexities) == len(usages) == EPOCHS  # once per epoch
        assert all(1 <= p <= 512 and 0 < u <= 1 for p, u in zip(perplexities, usages, strict=True))
        # at most as many codes in use as the perplexity says are used evenly
        assert all(p <= u * 512 + 1e-3 for p, u in zip(perplexities, usages, strict=True))
    for name in ("val/vq_perplexity", "test/vq_perplexity", "test/codebook_usage"):
        assert math.isfinite(metrics[name]) and metrics[name] > 0
    assert metrics["test/commitment"] >= 0 and "test/codebook" not in metrics  # EMA: no such term


def test_a_denoising_conv_vq_model_trains_and_draws_its_figures(compose, tmp_path, mnist_root):
    cfg = compose(["model=vq_vae", "model/net=conv", "model/corruption=masking",
                   f"data.root={mnist_root}", *TINY_RUN, "trainer.limit_train_batches=4",
                   "model.latent_dim=16", "model.ema=null"])  # fmt: skip
    metrics = run(cfg)
    run_dir = tmp_path / "run"
    assert metrics == json.loads((run_dir / "metrics.json").read_text())
    assert all(math.isfinite(v) for v in metrics.values() if v is not None)
    assert 0 < metrics["test/codebook_usage"] <= 1
    for figure in ("denoising_panel/denoising", "reconstructions/reconstructions",
                   "latent_space/scatter", "latent_interpolation/strip"):  # fmt: skip
        assert (run_dir / "figures" / f"{figure}_epoch000.png").is_file(), figure
    model = Autoencoder.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert model.supports.quantized and model.supports.corruption
    assert model.bottleneck.initialized and "bottleneck.codebook" in dict(model.named_parameters())
    assert metrics["test/codebook"] == metrics["test/commitment"] >= 0
