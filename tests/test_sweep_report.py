"""The sweep report: each job's strip of reconstructions by its evaluated weights, the figure that
puts the jobs side by side, and the Markdown table of the summary."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ae_lab.figures.drawing import image_grid, principal_axes
from ae_lab.figures.report import MAP_IMAGES, NUM_IMAGES, PAIRS
from ae_lab.layout import CODE_MAP, INTERPOLATION, SAMPLES, STRIP
from ae_lab.models import Autoencoder
from ae_lab.run.build import build
from ae_lab.run.train import run
from ae_lab.sweeps import report as sweep_report
from ae_lab.sweeps.report import (
    markdown_table,
    report_figure,
    row_label,
    split_overrides,
    write_report,
)
from ae_lab.sweeps.summary import collect
from tests.conftest import TINY_RUN

FINISHED = {"job": "0", "overrides": "model=vae seed=1", "status": "completed", "exit_code": 0,
            "error": "", "val/loss": 123.456, "test/loss": 120.0, "test/nll": 99.5}  # fmt: skip
FAILED = {"job": "1", "overrides": "model=vae seed=2", "status": "crashed", "exit_code": 1,
          "error": "RuntimeError: a | b"}  # fmt: skip
KILLED = {"job": "2", "overrides": "model=vae seed=3", "status": "no result", "exit_code": None,
          "error": "no metrics.json or failure.json"}  # fmt: skip


def test_the_table_marks_failed_jobs_with_their_error_and_puts_the_key_metric_first():
    table = markdown_table([FINISHED, FAILED, KILLED], key_metric="test/nll")
    header, rule, *rows, blank, note = table.splitlines()
    assert header == "| job | overrides | status | test/nll | val/loss | test/loss |"
    assert rule == "|---|---|---|---|---|---|"
    assert rows[0] == "| 0 | `seed=1` | completed | 99.5 | 123.5 | 120 |"
    # a pipe in an error cannot break the table
    assert rows[1] == "| 1 | `seed=2` | crashed: RuntimeError: a \\| b |  |  |  |"
    assert rows[2] == "| 2 | `seed=3` | no result: no metrics.json or failure.json |  |  |  |"
    assert (blank, note) == ("", "Every job: `model=vae`")


def test_a_single_job_s_overrides_are_all_its_own():
    assert split_overrides([FINISHED]) == ("", ["model=vae seed=1"])
    assert split_overrides([FINISHED, FAILED]) == ("model=vae", ["seed=1", "seed=2"])
    assert "Every job" not in markdown_table([FINISHED])


def test_a_row_is_labelled_with_its_overrides_and_its_key_metric_or_its_error():
    assert row_label(FINISHED, "val/loss") == "job 0: model=vae seed=1  ·  val/loss 123.5"
    assert row_label(FINISHED, "val/elbo") == "job 0: model=vae seed=1  ·  val/elbo n/a"
    assert row_label(FINISHED, "val/loss", "seed=1") == "job 0: seed=1  ·  val/loss 123.5"
    assert row_label(FAILED, "val/loss") == (
        "job 1: model=vae seed=2  ·  crashed: RuntimeError: a | b"
    )
    assert row_label({**FINISHED, "overrides": ""}, "test/loss").startswith("job 0: (no overrides)")


def _strip(seed: int, height: int = 62, width: int = 242) -> np.ndarray:
    """A random grey strip (as MNIST's are: no red in it)."""
    grey = np.random.default_rng(seed).integers(0, 256, (height, width, 1), dtype=np.uint8)
    return grey.repeat(3, axis=2)


def _find(image: np.ndarray, part: np.ndarray) -> bool:
    """Whether ``part`` appears pixel for pixel somewhere in ``image``."""
    h, w = part.shape[:2]
    rows, cols = np.nonzero((image[: 1 - h or None, : 1 - w or None] == part[0, 0]).all(-1))
    return any((image[r : r + h, c : c + w] == part).all() for r, c in zip(rows, cols, strict=True))


def test_the_figure_shows_each_job_s_strip_enlarged_and_grows_with_the_jobs():
    one = report_figure([FINISHED], [_strip(0)], "val/loss", title="a sweep")
    three = report_figure(
        [FINISHED, {**FINISHED, "job": "3"}, FAILED], [_strip(0), _strip(1), None], "val/loss"
    )
    assert one.dtype == np.uint8 and one.ndim == 3 and one.shape[2] == 3
    assert one.shape[1] == three.shape[1] >= sweep_report.TARGET_WIDTH
    assert three.shape[0] > one.shape[0] + 62 * 3  # a strip, enlarged 3x, per finished job
    # every strip is in the figure, each pixel made a 3x3 block (28-pixel digits stay legible)
    for seed in (0, 1):
        assert _find(three, _strip(seed).repeat(3, axis=0).repeat(3, axis=1))
    # the failed job's label is drawn in red, the finished jobs' in near-black
    red = (three[..., 0] > 140) & (three[..., 1] < 60) & (three[..., 2] < 60)
    assert red.sum() > 50
    assert not ((one[..., 0] > 140) & (one[..., 1] < 60) & (one[..., 2] < 60)).any()


def test_strips_of_several_sizes_keep_their_pixels():
    small, wide = _strip(0), _strip(1, height=130, width=530)  # 28- and 64-pixel images
    figure = report_figure([FINISHED, FINISHED], [small, wide], "val/loss")
    assert _find(figure, wide) and _find(figure, small)  # no enlargement: the widest fits
    with pytest.raises(ValueError, match="2 rows but 1 strips"):
        report_figure([FINISHED, FINISHED], [small], "val/loss")


def test_write_report_reads_each_job_s_strip_and_says_which_have_none(tmp_path):
    for job, overrides, strip in (("0", "seed=1", _strip(0)), ("1", "seed=2", None)):
        (tmp_path / job / ".hydra").mkdir(parents=True)
        (tmp_path / job / ".hydra" / "overrides.yaml").write_text(f"- {overrides}\n")
        (tmp_path / job / "metrics.json").write_text('{"val/loss": 2.5}')
        if strip is not None:
            (tmp_path / job / "report").mkdir()
            Image.fromarray(strip).save(tmp_path / job / STRIP)
    (tmp_path / "1" / "report").mkdir()
    (tmp_path / "1" / STRIP).write_bytes(b"not a png")  # damaged: no row lost
    rows = collect(tmp_path)
    path = write_report(tmp_path, rows, None)
    assert path == tmp_path / "report.png" and not list(tmp_path.glob(".*tmp"))
    with Image.open(path) as image:
        figure = np.asarray(image.convert("RGB"))
    assert _find(figure, _strip(0).repeat(3, axis=0).repeat(3, axis=1))
    grey = (figure == sweep_report.GREY).all(-1)  # the placeholder of the job without a strip
    assert grey.sum() > 1000


def test_each_run_writes_its_report_files_from_the_weights_it_evaluated(
    compose, mnist_root, tmp_path
):
    """The strip, the code map, the interpolation and the samples. The best checkpoint's weights, which trainer.validate/test(ckpt_path="best") load into the
    model: ranked here by the *highest* val/loss, so that the best is not the last epoch."""
    cfg = compose(["model=ae", "callbacks=none", f"data.root={mnist_root}",
                   "callbacks.model_checkpoint.mode=max", *TINY_RUN[:8],
                   "trainer.max_epochs=2", "trainer.limit_train_batches=6"])  # fmt: skip
    run(cfg)
    run_dir = tmp_path / "run"
    with Image.open(run_dir / STRIP) as image:
        written = np.asarray(image.convert("RGB"))
    data = build(cfg.data, "data")
    images, _ = data.sample_batch(NUM_IMAGES, split="val", seed=0)

    def strip_of(checkpoint: str) -> np.ndarray:
        model = Autoencoder.load_from_checkpoint(run_dir / "checkpoints" / checkpoint).eval()
        with torch.no_grad():
            return image_grid(torch.cat([images, model.reconstruct(images)]), nrow=len(images))

    (best,) = (p.name for p in (run_dir / "checkpoints").glob("best-*.ckpt"))
    assert best == "best-epoch000.ckpt"  # the test's premise: best and last weights differ
    assert written.shape == (2 * 30 + 2, 8 * 30 + 2, 3)  # 28-pixel images, 2-pixel padding
    np.testing.assert_array_equal(written, strip_of(best))
    assert not np.array_equal(written, strip_of("last.ckpt"))

    # the rest of the run's part of report.md, from the same weights
    model = Autoencoder.load_from_checkpoint(run_dir / "checkpoints" / best).eval()
    with np.load(run_dir / CODE_MAP) as saved:
        coords, labels = saved["coords"], saved["labels"]
        assert str(saved["method"]) == "PCA" and list(saved["class_names"]) == list(
            data.class_names
        )
    test_images, test_labels = data.sample_batch(MAP_IMAGES, split="test", seed=0)
    with torch.no_grad():
        codes = model.encode(test_images).double().numpy()
    np.testing.assert_array_equal(labels, test_labels.numpy())
    np.testing.assert_allclose(np.abs(coords), np.abs(principal_axes(codes)[0]), atol=1e-3)
    with Image.open(run_dir / INTERPOLATION) as image:  # 4 rows: image, 10 steps, image; 2x
        assert image.size == (2 * (12 * 30 + 2), 2 * (PAIRS * 30 + 2))
    with Image.open(run_dir / SAMPLES) as image:
        assert np.asarray(image.convert("L")).std() > 5  # decoded samples under their title


def test_the_figure_shortens_the_long_numbers_of_a_search_the_table_keeps_them():
    drawn = (
        "model.optimizer.lr=0.0012520653814999472 model.beta=2.5 model.latent_dim=16 x=1.23456e-05"
    )
    assert sweep_report.short_numbers(drawn) == (
        "model.optimizer.lr=0.001252 model.beta=2.5 model.latent_dim=16 x=1.235e-05"
    )
    row = {**FINISHED, "overrides": "model.optimizer.lr=0.0012520653814999472"}
    assert "`model.optimizer.lr=0.0012520653814999472`" in markdown_table([row])
