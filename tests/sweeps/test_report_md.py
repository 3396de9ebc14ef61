"""A sweep's report.md, from fake sweep folders in the layout Hydra and the jobs leave: the table
with each column's best in bold the right way, ae_bakeoff's numbers beside ours for a bake-off,
image links that exist, the figures it draws, and the same page for an Optuna search and for a
sweep whose jobs all failed. It never imports torch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ae_lab.sweeps import published
from ae_lab.sweeps.callbacks import summarise
from ae_lab.sweeps.report_md import CODES_PNG, PROBE_PNG, REPORT_MD
from ae_lab.sweeps.report_plots import CodeMap, code_maps
from ae_lab.sweeps.report_table import direction
from tests.conftest import REPO
from tests.helpers.sweeps import add_job

BAKEOFF = ["experiment=bakeoff", "data=fashion_mnist"]
#: model: (test/recon, test/probe_linear_550, test/psnr, test/kl)
RESULTS = {"vanilla": (215.0, 0.70, 14.0, 3.0), "vae": (226.0, 0.50, 15.0, 9.0),
           "sparse": (214.0, 0.30, 16.0, 1.0)}  # fmt: skip


def bakeoff_sweep(sweep: Path, anomaly_job: bool = False) -> Path:
    """Three finished bake-off jobs and a failed one (vq)."""
    for n, (model, (recon, probe, psnr, kl)) in enumerate(RESULTS.items()):
        metrics = {"val/loss": recon + 1, "test/recon": recon, "test/probe_linear_550": probe,
                   "test/probe_knn": probe + 0.2, "test/psnr": psnr, "test/kl": kl}  # fmt: skip
        holdout, latent = (1, 2) if anomaly_job and n == 0 else (None, 20)
        if anomaly_job and n == 0:
            metrics["test/anomaly_auroc"] = 0.9
        add_job(sweep, n, [*BAKEOFF, f"bakeoff={model}"], metrics,
                choices={"experiment": "bakeoff", "bakeoff": model, "data": "fashion_mnist"},
                config={"data": {"holdout_class": holdout}, "model": {"latent_dim": latent}})  # fmt: skip
    # failed before it composed its config: its overrides say which model it was
    add_job(sweep, 3, [*BAKEOFF, "bakeoff=vq"], error="RuntimeError: a | b " + "x" * 300)
    return sweep


def table(text: str) -> list[dict[str, str]]:
    """The metrics table of report.md as rows of {header: cell}."""
    after = text.split("## Metrics", 1)[1].strip().splitlines()
    lines = after[: next(n for n, line in enumerate(after) if not line.startswith("|"))]
    split = lambda line: [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]  # noqa: E731
    header = split(lines[0])
    assert set(lines[1]) <= {"|", "-"}
    return [dict(zip(header, split(line), strict=True)) for line in lines[2:]]


def links(text: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)


def png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_the_bakeoff_table_bolds_each_best_the_right_way_beside_the_published_numbers(tmp_path):
    summarise(bakeoff_sweep(tmp_path))
    text = (tmp_path / REPORT_MD).read_text()
    rows = table(text)
    assert list(rows[0])[:5] == ["job", "model", "status", "val/loss", "test/recon"]
    header = list(rows[0])
    # each published column right after ours; no AUROC column: no job ran as ae_bakeoff's did
    at = header.index("test/recon")
    assert header[at + 1] == "test/recon (ae_bakeoff)"
    assert header[header.index("test/probe_linear_550") + 1] == "test/probe_linear_550 (ae_bakeoff)"
    assert not any("anomaly" in h for h in header)
    assert [r["model"] for r in rows] == ["vanilla", "vae", "sparse", "vq"]
    fashion = published.models("fashion_mnist")
    for row in rows:  # the failed job keeps its published numbers: what it was meant to reach
        assert float(row["test/recon (ae_bakeoff)"]) == pytest.approx(
            fashion[row["model"]]["test/recon"], rel=1e-3
        )
    bold = {h: [r["model"] for r in rows if r[h].startswith("**")] for h in header[3:]}
    assert bold["test/recon"] == ["sparse"] and bold["val/loss"] == ["sparse"]  # lowest
    assert bold["test/probe_linear_550"] == ["vanilla"] and bold["test/psnr"] == ["sparse"]
    assert bold["test/probe_knn"] == ["vanilla"]  # highest
    assert bold["test/kl"] == [] and bold["test/recon (ae_bakeoff)"] == []  # not ranked / theirs
    failed = rows[3]
    assert (
        failed["status"].startswith("crashed: RuntimeError: a \\| b")
        and len(failed["status"]) < 170
    )
    assert failed["test/recon"] == "" and "did not (job 3)" in text


def test_every_image_link_exists_and_the_figures_show_what_they_claim(tmp_path):
    summarise(bakeoff_sweep(tmp_path))
    text = (tmp_path / REPORT_MD).read_text()
    found = links(text)
    assert {"report.png", CODES_PNG, PROBE_PNG, "0/report/samples.png",
            "2/report/interpolation.png"} <= set(found)  # fmt: skip
    assert all((tmp_path / link).is_file() for link in found)
    assert not any(link.startswith("3/") for link in found)  # the failed job left none
    assert "### job 3: vq" in text and "Did not finish (crashed" in text
    # the code maps: one panel per job, each class in its own colour, the failed job's empty
    codes = png(tmp_path / CODES_PNG)
    for colour in ((31, 119, 180), (255, 127, 14), (44, 160, 44)):  # tab10's first three
        assert (np.abs(codes.astype(int) - colour).sum(-1) < 30).sum() > 20
    # the probe plot: our points filled, ae_bakeoff's hollow, one colour per job
    plot = png(tmp_path / PROBE_PNG)
    assert plot.std() > 10 and "## ae_bakeoff's published numbers" in text
    assert published.source().split(":")[0] in text


def test_the_published_auroc_stands_only_beside_a_job_run_as_ae_bakeoff_ran_it(tmp_path):
    summarise(bakeoff_sweep(tmp_path, anomaly_job=True))
    rows = table((tmp_path / REPORT_MD).read_text())
    theirs = [r["test/anomaly_auroc (ae_bakeoff)"] for r in rows]
    assert float(theirs[0]) == pytest.approx(
        published.models("fashion_mnist")["vanilla"]["test/anomaly_auroc"]
    )
    assert theirs[1:] == ["", "", ""]  # latent 20, no class held out: not comparable


def test_an_optuna_search_gets_the_same_page_ranked_by_its_metric(tmp_path):
    draws = [0.0012520653814999472, 0.00031, 0.0071]
    for n, (lr, elbo) in enumerate(zip(draws, (-100.0, -90.0, -120.0), strict=True)):
        add_job(tmp_path, n, [f"model.optimizer.lr={lr}", "model.beta=1.5"],
                {"val/elbo": elbo, "val/loss": -elbo, "test/recon": 80.0 + n},
                choices={"model": "vae", "data": "fashion_mnist"}, figures=n != 1)  # fmt: skip
    (tmp_path / "optimization_results.yaml").write_text(
        "name: optuna\nbest_params:\n  model.optimizer.lr: 0.00031\nbest_value: -90.0\n"
    )
    summarise(tmp_path, "val/elbo")
    text = (tmp_path / REPORT_MD).read_text()
    rows = table(text)
    assert list(rows[0])[:4] == ["job", "overrides", "status", "val/elbo"]
    assert [r["overrides"] for r in rows] == [
        "`model.optimizer.lr=0.001252`", "`model.optimizer.lr=0.00031`", "`model.optimizer.lr=0.0071`"
    ]  # fmt: skip
    assert [r["val/elbo"] for r in rows] == ["-100", "**-90**", "-120"]  # the highest ELBO
    assert [r["val/loss"] for r in rows] == ["100", "**90**", "120"]  # the lowest loss
    assert not any("ae_bakeoff" in h for h in rows[0]) and "published" not in text
    assert "Every job: `model.beta=1.5`" in text
    assert "best trial: `model.optimizer.lr=0.00031`, val/elbo -90" in text
    assert "### job 1: model.optimizer.lr=0.00031\n\nThe job left no figures." in text
    assert "No job has both a probe accuracy" in text  # no probes in these metrics
    assert all((tmp_path / link).is_file() for link in links(text))


def test_a_sweep_whose_jobs_all_failed_still_gets_its_page(tmp_path):
    add_job(tmp_path, 0, ["model=ae"], error="ValueError: nope")
    add_job(tmp_path, 1, ["model=vae"], error="ValueError: nope")
    summarise(tmp_path)
    text = (tmp_path / REPORT_MD).read_text()
    assert "2 jobs, 0 finished, 2 did not (jobs 0, 1)" in text
    assert [r["status"] for r in table(text)] == ["crashed: ValueError: nope"] * 2
    assert "## Codes" not in text and not (tmp_path / CODES_PNG).exists()
    assert all((tmp_path / link).is_file() for link in links(text))


def test_the_directions():
    assert [
        direction(m) for m in ("val/loss", "test/recon", "test/nll", "test/identity_error")
    ] == ["min"] * 4
    higher = ("val/elbo", "test/psnr", "test/ssim", "test/probe_linear", "test/probe_linear_100",
              "test/probe_knn", "test/anomaly_auroc", "test/anomaly_auroc_nll")  # fmt: skip
    assert {direction(m) for m in higher} == {"max"}
    assert direction("test/kl") is None and direction("test/active_units") is None


def test_a_code_map_panel_per_job_and_one_for_a_job_without_codes():
    rng = np.random.default_rng(0)
    found = CodeMap(rng.normal(size=(50, 2)).astype(np.float32), rng.integers(0, 3, 50), "PCA",
                    ("a", "b", "c"))  # fmt: skip
    one, five = (
        code_maps(["job 0"], [found]),
        code_maps([f"job {n}" for n in range(5)], [found] * 5),
    )
    assert five.shape[0] > one.shape[0] and five.shape[1] > one.shape[1]  # a second row of panels
    with pytest.raises(ValueError, match="2 titles but 1 maps"):
        code_maps(["a", "b"], [found])


def test_the_report_is_written_without_torch(tmp_path):
    """The sweep's own process writes it: importing torch there would cost seconds per sweep."""
    bakeoff_sweep(tmp_path)
    script = (
        "import sys, pathlib; from ae_lab.sweeps.callbacks import summarise; "
        f"summarise(pathlib.Path({str(tmp_path)!r})); "
        "assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]
    assert (tmp_path / REPORT_MD).is_file() and (tmp_path / CODES_PNG).is_file()


def test_the_published_numbers_are_ae_bakeoff_s_for_every_model_of_the_preset():
    data = json.loads(published.SOURCE.read_text())
    presets = sorted(p.stem for p in (REPO / "conf" / "bakeoff").glob("*.yaml"))
    for dataset in ("fashion_mnist", "mnist"):
        assert sorted(data["datasets"][dataset]) == presets
        for model, values in data["datasets"][dataset].items():
            # ae_bakeoff's denoising model reconstructs the clean image: test/recon_clean here
            recon = "test/recon_clean" if model == "denoising" else "test/recon"
            assert set(values) == set(published.METRICS) - {"test/recon", "test/recon_clean"} | {
                recon
            }
    # spot checks against ae_bakeoff's results/fmnist/*.md and results/mnist/*.md
    assert data["datasets"]["fashion_mnist"]["vanilla"]["test/recon"] == pytest.approx(
        212.6, abs=0.05
    )
    assert data["datasets"]["mnist"]["vq"]["test/probe_linear_550"] == pytest.approx(
        0.7717, abs=1e-4
    )
