"""``experiment=bakeoff``: ae_bakeoff's protocol composed for each of its models (conf/bakeoff/,
discovered), the models built as ae_bakeoff builds them, the data as it pads and splits them, and a
tiny version of the whole sweep run through train.py with joblib, ending in its report.md."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from ae_lab.models import KLSparsityPenalty
from ae_lab.models.corruption import GaussianNoise
from ae_lab.run.build import build, build_model
from ae_lab.sweeps.report_md import CODES_PNG, REPORT_MD
from tests.conftest import CONF, SHARED_DATA
from tests.helpers.configs import options
from tests.test_cli import train

MODELS = options("bakeoff")
#: ae_bakeoff's dense widths for 32x32 images (DenseEncoder/DenseDecoder._get_units): weight shapes
DEEP_ENCODER = [(341, 1024), (113, 341), (20, 113)]
VAE_ENCODER = [(512, 1024), (256, 512), (40, 256)]  # it emits mean and log-variance: 40 units
DEEP_DECODER = [(113, 20), (341, 113), (1024, 341)]
#: per model: encoder and decoder weight shapes, and what its own parts must be
EXPECTED: dict[str, dict[str, Any]] = {
    "shallow": {"encoder": [(20, 1024)], "decoder": [(1024, 20)], "code": "relu"},
    "vanilla": {},
    "sparse": {"code": "sigmoid", "penalty": (KLSparsityPenalty, {"target": 0.25, "weight": 1.0})},
    "denoising": {"corruption": (GaussianNoise, {"std": 0.5, "clip": True})},
    "vae": {"encoder": VAE_ENCODER, "beta": 1.0},
    "beta_vae_strict": {"encoder": VAE_ENCODER, "beta": 2.0},
    "beta_vae_loose": {"encoder": VAE_ENCODER, "beta": 0.5},
    "vq": {
        "vq": {
            "per_unit": True,
            "codebook_size": 512,
            "commitment": 1.0,
            "ema": None,
            "dead_code_steps": None,
        }
    },  # fmt: skip
}


def test_the_sweep_runs_every_model_of_the_group():
    preset = OmegaConf.load(CONF / "experiment" / "bakeoff.yaml")
    swept = str(preset.hydra.sweeper.params.bakeoff).split(",")
    assert sorted(swept) == MODELS and len(MODELS) == 8 and set(EXPECTED) == set(MODELS)


def compose_model(compose, name: str):
    cfg = compose(["experiment=bakeoff", f"bakeoff={name}"])
    return cfg, cfg.model


@pytest.mark.parametrize("name", MODELS)
def test_each_model_composes_to_the_protocol(compose, name):
    cfg, model = compose_model(compose, name)
    assert (cfg.data.pad_to, cfg.data.batch_size, cfg.data.binarize) == (32, 256, False)
    assert round(60_000 * cfg.data.val_fraction) == 5_000  # 55,000 to train, 5,000 to validate
    assert cfg.trainer.max_epochs == 60 and cfg.task_name == "bakeoff"
    assert model.optimizer._target_ == "torch.optim.Adam" and model.optimizer.lr == 1e-3
    assert (model.latent_dim, model.likelihood, model.output_activation) == (20, "bernoulli",
                                                                             "sigmoid")  # fmt: skip
    assert model.net._target_ == "ae_lab.nets.mlp_autoencoder" and model.net.batch_norm
    assert model.net.activation == "relu"


def linear_shapes(module: nn.Module) -> list[tuple[int, int]]:
    return [tuple(m.weight.shape) for m in module.modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize("name", MODELS)
def test_each_model_is_built_as_ae_bakeoff_builds_it(compose, name):
    _, cfg = compose_model(compose, name)
    expected = EXPECTED[name]
    model = build_model(cfg, (1, 32, 32))
    assert linear_shapes(model.encoder) == expected.get("encoder", DEEP_ENCODER)
    assert linear_shapes(model.decoder) == expected.get("decoder", DEEP_DECODER)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    assert len(norms) == (0 if name == "shallow" else 4)  # after each hidden layer, each way
    assert model.encoder.mlp.output_activation.name == expected.get("code", "identity")
    assert model.supports.prior == ("beta" in expected)
    if "beta" in expected:
        assert model.bottleneck.beta == expected["beta"] and model.bottleneck.warmup_steps == 0
    for part in ("penalty", "corruption"):
        kind, settings = expected.get(part, (type(None), {}))
        assert isinstance(getattr(model, part), kind)
        assert {k: getattr(getattr(model, part), k) for k in settings} == settings
    if name == "sparse":
        assert model.penalty.squash is False
    if "vq" in expected:
        quantizer = model.bottleneck
        assert {k: getattr(quantizer, k) for k in expected["vq"]} == expected["vq"]
        assert quantizer.codebook.abs().max() <= 1 / 512  # U(-1/512, 1/512), as ae_bakeoff
    # the reconstruction term: binary cross-entropy summed over the pixels, mean over the batch
    model.eval()
    x = torch.rand(6, 1, 32, 32)
    with torch.no_grad():
        recon = model.objective(x)["recon"]
        if not model.supports.prior:  # (a VAE's term is of a posterior sample)
            expected_recon = F.binary_cross_entropy(model.reconstruct(x), x, reduction="sum") / 6
            torch.testing.assert_close(recon, expected_recon, rtol=1e-4, atol=1e-3)
    assert math.isfinite(recon.item()) and recon.item() > 32 * 32 * 0.3


def test_the_data_are_padded_to_32_and_split_as_ae_bakeoff_splits_them(compose):
    root = SHARED_DATA / "fashion-mnist"
    if not (root / "FashionMNIST" / "raw").is_dir():
        pytest.skip(
            f"real Fashion-MNIST not found in {root}: download it once with `.venv/bin/python -c "
            "\"import torchvision; torchvision.datasets.FashionMNIST('DIR', download=True)\"` "
            "and put DIR there"
        )
    cfg = compose(["experiment=bakeoff", "data=fashion_mnist", f"data.root={root}"])
    data = build(cfg.data, "data")
    data.setup()
    assert data.image_shape == (1, 32, 32)
    assert [data.split_size(s) for s in ("train", "val", "test")] == [55_000, 5_000, 10_000]
    images, _ = data.sample_batch(64, split="test")
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert images[..., border].abs().max() == 0 and images.max() > 0.5  # zero-padded, not binarised


@pytest.mark.slow
def test_a_tiny_bakeoff_sweep_runs_with_joblib_and_writes_its_report(tmp_path, fashion_root):
    """Three of the models (one of each kind of bottleneck), one epoch of two batches each, two
    jobs at a time."""
    result = train(
        "-m", "experiment=bakeoff", "bakeoff=shallow,vae,vq", "data=fashion_mnist",
        f"data.root={fashion_root}", "data.batch_size=32", "callbacks=none",
        "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false", "++model.nll_samples=4",
        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"paths.log_dir={tmp_path}",
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "bakeoff" / "multiruns").iterdir()
    rows = json.loads((sweep / "summary.json").read_text())
    assert [r["status"] for r in rows] == ["completed"] * 3
    text = (sweep / REPORT_MD).read_text()
    assert f"page:   {sweep / REPORT_MD}" in result.stdout
    table = [line for line in text.splitlines() if re.match(r"\| \d+ \| ", line)]
    assert [line.split(" | ")[1] for line in table] == ["shallow", "vae", "vq"]
    assert "test/recon (ae_bakeoff)" in text and "test/probe_linear_550 (ae_bakeoff)" in text
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(linked) >= 3 + 2 * 3 and all((sweep / link).is_file() for link in linked)
    assert (sweep / CODES_PNG).is_file() and (sweep / "0" / "report" / "codes.npz").is_file()
