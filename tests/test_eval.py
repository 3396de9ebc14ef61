"""``eval.py``: a run's metrics and figures remade from its checkpoint, into ``RUN/eval/<time>/``,
for every model, from a moved run folder, a lone checkpoint and a run stopped mid-training; the
run's own files are never touched."""

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ae_lab.errors import RunInterrupted, UserError
from ae_lab.models import Autoencoder
from ae_lab.run.eval_checkpoint import evaluate_checkpoint
from ae_lab.run.eval_config import prepare_argv
from ae_lab.run.train import run
from tests.conftest import REPO, TINY_RUN, compose_config
from tests.helpers.configs import options
from tests.test_train import expected_figures

QUICK = [*TINY_RUN, "++model.nll_samples=8"]


def fingerprint(folder: Path) -> dict[str, str]:
    """sha256 of every file of a run outside its eval/ folder."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "eval" not in p.relative_to(folder).parts
    }


def evaluate(ckpt: Path, *overrides: str, out: Path) -> dict:
    """``python eval.py ckpt_path=<ckpt> <overrides>``, in-process, into ``out``."""
    argv = prepare_argv(["eval.py", f"ckpt_path={ckpt}", *overrides])
    composed = [a for a in argv[1:] if not a.startswith("hydra.run.dir=")]
    return evaluate_checkpoint(compose_config(composed, out, config_name="eval"))


@pytest.mark.parametrize("model", options("model"))
def test_eval_remakes_metrics_and_figures_of_every_model(compose, tmp_path, mnist_root, model):
    run_dir = tmp_path / "run"
    trained = run(compose([f"model={model}", f"data.root={mnist_root}", *QUICK]))
    before = fingerprint(run_dir)
    out = tmp_path / "run" / "eval" / "now"
    metrics = evaluate(run_dir / "checkpoints" / "last.ckpt", out=out)
    assert fingerprint(run_dir) == before  # the run's own files, byte for byte
    # the same weights, the same seed: the same numbers as the run's own metrics.json
    assert metrics == trained == json.loads((out / "metrics.json").read_text())
    net = Autoencoder.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    drawn = sorted(f"{p.parent.name}/{p.stem}" for p in (out / "figures").glob("*/*.png"))
    assert drawn == sorted(
        expected_figures(net.supports, net.latent_dim, math.prod(net.input_shape))
    )
    with Image.open(out / "figures" / "latent_interpolation" / "grid.gif") as gif:
        assert gif.n_frames > 1


def test_eval_of_a_moved_run_a_lone_checkpoint_and_other_data(
    compose, tmp_path, mnist_root, fashion_root
):
    run(compose(["model=vae", f"data.root={mnist_root}", *QUICK]))
    moved = tmp_path / "elsewhere" / "old_run"
    moved.parent.mkdir()
    shutil.move(tmp_path / "run", moved)
    first = evaluate(moved / "checkpoints" / "last.ckpt", out=tmp_path / "a")
    assert first == json.loads((moved / "metrics.json").read_text())

    lone = tmp_path / "lone" / "model.ckpt"  # no .hydra/ beside it: the checkpoint's own config
    lone.parent.mkdir()
    shutil.copy(moved / "checkpoints" / "last.ckpt", lone)
    assert evaluate(lone, out=tmp_path / "b") == first

    other = evaluate(lone, "data=fashion_mnist", f"data.root={fashion_root}",
                     "callbacks.latent_interpolation.steps=7", "model.nll_samples=3",
                     out=tmp_path / "c")  # fmt: skip
    assert other["test/loss"] != first["test/loss"]  # other images
    with Image.open(tmp_path / "c" / "figures" / "latent_interpolation" / "pair.gif") as gif:
        assert gif.n_frames == 2 * 7 - 2  # forward then back: the steps asked for


def test_eval_of_a_run_stopped_mid_training(compose, tmp_path, mnist_root):
    overrides = ["model=vae", f"data.root={mnist_root}", *QUICK, "trainer.max_epochs=3",
                 "trainer.limit_train_batches=4", "+callbacks.stop._target_=tests.helpers."
                 "callbacks.SignalAt", "+callbacks.stop.epoch=1", "+callbacks.stop.batch=2"]  # fmt: skip
    with pytest.raises(RunInterrupted):
        run(compose(overrides))
    assert not (tmp_path / "run" / "metrics.json").exists()
    metrics = evaluate(tmp_path / "run" / "checkpoints" / "last.ckpt", out=tmp_path / "e")
    assert metrics["test/nll"] > 0 and (tmp_path / "e" / "figures" / "samples").is_dir()


def test_a_missing_checkpoint_is_left_for_the_job_to_name(tmp_path):
    """prepare_argv adds nothing when it cannot read the checkpoint; the job then refuses it with
    read_checkpoint's one line (tests/test_checks.py), as for train.py."""
    argv = ["eval.py", f"ckpt_path={tmp_path / 'nope.ckpt'}", "data.root=x"]
    assert prepare_argv(argv) == argv


@pytest.mark.slow
def test_eval_py_on_the_command_line(compose, tmp_path, mnist_root):
    run(compose(["model=ae", f"data.root={mnist_root}", *QUICK]))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def eval_py(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(REPO / "eval.py"), *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300)  # fmt: skip

    done = eval_py(f"ckpt_path={ckpt}")
    assert done.returncode == 0, done.stderr[-2000:]
    (made,) = (tmp_path / "run" / "eval").iterdir()
    assert json.loads((made / "metrics.json").read_text())["test/loss"] > 0
    for args, says in [
        ((), "ckpt_path"),
        ((f"ckpt_path={ckpt}", "model=vae"), "model"),
    ]:
        refused = eval_py(*args)
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert refused.stderr.startswith("error: ") and says in refused.stderr
        assert "Traceback" not in refused.stderr


@pytest.mark.parametrize("override", ["model.latent_dim=64", "model/net=conv", "model.beta=4"])
def test_eval_refuses_to_change_what_the_model_computes(compose, tmp_path, mnist_root, override):
    """The checkpoint's weights are the model: only evaluation settings change (a size mismatch
    was a traceback)."""
    run(compose(["model=vae", f"data.root={mnist_root}", *QUICK]))
    with pytest.raises(UserError, match=r"evaluates the checkpoint's model as it was trained"):
        evaluate(tmp_path / "run" / "checkpoints" / "last.ckpt", override, out=tmp_path / "e")
