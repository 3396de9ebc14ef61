"""``python train.py`` as a user runs it, in a subprocess: the help, the short errors, a real run,
a sweep and DDP on two CPU processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY_RUN
from tests.helpers.configs import groups, options


def train(*args: str, cwd: Path = REPO, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_help_lists_every_group_with_exactly_its_options():
    """Read from conf/, so a new option in any group cannot make this test stale."""
    result = train("--help")
    assert result.returncode == 0
    section = result.stdout.split("== Configuration groups ==")[1].split("\n\n")[1]
    listed = dict(line.split(": ", 1) for line in section.splitlines())
    # Hydra's own groups (hydra/, hydra/launcher/) are listed by --hydra-help instead
    expected = {
        group: ", ".join(options(group)) for group in groups() if group.split("/")[0] != "hydra"
    }
    assert listed == expected
    assert "data.root=DIR" in result.stdout
    # ...but how a sweep's jobs run is asked for often enough to be told here too
    launchers = result.stdout.split("hydra/launcher=OPTION")[1].split("\n\n")[0]
    for option in launcher_options():
        assert f"{option} " in launchers or f"{option}," in launchers, option


def launcher_options() -> list[str]:
    """Hydra's hydra/launcher options as this install has them (its plugins and conf/)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return GlobalHydra.instance().config_loader().get_group_options("hydra/launcher")


def test_unknown_model_gives_the_short_error():
    result = train("model=nope")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "Could not find 'model/nope'" in result.stderr
    assert "Available options in 'model'" in result.stderr and "vae" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_key_gives_the_short_error():
    result = train("data.batch_sise=4")
    assert result.returncode == 2 and "batch_sise" in result.stderr
    assert "Did you mean batch_size?" in result.stderr and len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_missing_dataset_gives_the_short_error(tmp_path):
    result = train(
        f"data.root={tmp_path}", "data.download=false", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: MNIST not found")
    assert str(tmp_path / "MNIST" / "raw") in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_real_run_writes_its_run_directory(tmp_path, mnist_root):
    run_dir = tmp_path / "run"
    result = train("model=vae", f"data.root={mnist_root}", f"hydra.run.dir={run_dir}", *TINY_RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert json.loads((run_dir / "metrics.json").read_text())["test/elbo"] < 0
    assert (run_dir / "figures" / "latent_space" / "manifold_epoch000.png").is_file()
    assert (run_dir / "train.log").read_text().count("Trainer.fit` stopped") == 1


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(tmp_path, mnist_root):
    run_dir = tmp_path / "run"
    result = train("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "model=vae",
                   f"data.root={mnist_root}", f"hydra.run.dir={run_dir}", *TINY_RUN)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "test/loss" in metrics
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list((run_dir / "figures" / "latent_interpolation").glob("grid_*.gif"))


@pytest.mark.parametrize(
    ("data", "kaggle"),
    [("celeba", "jessicali9530/celeba-dataset")],  # anime's message: tests/data/test_faces.py
)
def test_missing_faces_give_the_short_error_with_the_kaggle_command(tmp_path, data, kaggle):
    result = train(
        "model=cnn_vae",
        f"data={data}",
        f"data.root={tmp_path}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert f"kaggle datasets download -d {kaggle}" in result.stderr


def test_a_finished_run_directory_is_left_as_it_was(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("the earlier run's config\n")
    (run_dir / "metrics.json").write_text('{"val/loss": 1.0}\n')
    result = train(f"hydra.run.dir={run_dir}", "data.download=false")
    assert result.returncode == 2 and result.stderr.startswith("error: ")
    assert "already holds a run" in result.stderr and "Traceback" not in result.stderr
    assert (run_dir / ".hydra" / "config.yaml").read_text() == "the earlier run's config\n"
    assert sorted(p.name for p in run_dir.iterdir()) == [".hydra", "metrics.json"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["~model.net"], "error: model.net is missing: ae_lab.models.Autoencoder needs it"),
        (["hydra.run.dir=/tmp/" + "x" * 300], "longer than the file system allows"),
    ],
    ids=["part-removed", "long-run-dir"],
)
def test_what_was_a_traceback_is_one_line(args, message):
    result = train(*args)
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr


@pytest.mark.parametrize("after_s", [0.8, 1.5, 3.0])
def test_sigterm_while_the_run_starts_is_one_line_and_leaves_nothing(tmp_path, after_s):
    """Before the run's own handlers are in place (Hydra composing, torch importing): exit 143,
    one error line, no traceback, and the claimed directory gone."""
    import signal
    import time

    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), f"hydra.run.dir={run_dir}",
         "data.root=/nonexistent", "data.download=false"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
    )  # fmt: skip
    time.sleep(after_s)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    if process.returncode == 2:  # it got as far as refusing the missing data: fine too
        return
    assert process.returncode == 143, stderr[-2000:]
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1].startswith("error: ")
    assert not run_dir.exists()
