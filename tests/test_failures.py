"""A run that fails says so: divergence ends in RunFailed with nothing non-finite kept; SIGTERM and
Ctrl-C end in RunInterrupted (exit 143 / 130) with a usable last.ckpt and the resume command."""

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ae_lab.data import MNISTDataModule
from ae_lab.errors import RunFailed, RunInterrupted, UserError
from ae_lab.run.callbacks import DivergenceGuard
from ae_lab.run.train import run
from tests.conftest import REPO, TINY_RUN

FAST = ["callbacks=none", "logger=none", *TINY_RUN[:6]]  # 1 epoch of 2 batches, no figures


def finite(path: Path) -> bool:
    weights = torch.load(path, weights_only=True)["state_dict"]
    return all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())


# ---- divergence ----------------------------------------------------------------------------------
def test_a_diverging_run_fails_before_saving_or_drawing_anything(compose, tmp_path, mnist_root):
    """lr=1e6 makes the loss NaN within a few steps: RunFailed, no checkpoint, no figure, no
    metrics (today: exit 0 with NaN checkpoints and nulls, or a LinAlgError from a figure)."""
    cfg = compose([f"data.root={mnist_root}", "model.optimizer.lr=1e6", *TINY_RUN,
                   "trainer.limit_train_batches=5"])  # fmt: skip
    with pytest.raises(RunFailed) as failure:
        run(cfg)
    message = str(failure.value)
    assert "diverged" in message and "epoch 0" in message and "step" in message
    assert "model.optimizer.lr" in message and "1e+06" in message
    assert "No checkpoint was written" in message
    run_dir = tmp_path / "run"
    assert not (run_dir / "metrics.json").exists()
    assert not list(run_dir.rglob("*.ckpt"))
    assert not [p for p in run_dir.rglob("figures/**/*") if p.is_file()]


def test_divergence_after_a_checkpoint_keeps_only_finite_ones(compose, tmp_path, mnist_root):
    """Weights poisoned at the start of epoch 1: the epoch-0 checkpoints stay (finite), no
    epoch-1 checkpoint or figure is written, and the message names what was kept."""
    cfg = compose([f"data.root={mnist_root}", *TINY_RUN, "trainer.max_epochs=3",
                   "+callbacks.poison._target_=tests.helpers.callbacks.PoisonWeights",
                   "+callbacks.poison.epoch=1"])  # fmt: skip
    with pytest.raises(RunFailed, match=r"diverged: the training loss became nan at epoch 1"):
        run(cfg)
    run_dir = tmp_path / "run"
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert checkpoints == ["best-epoch000.ckpt", "last.ckpt"]
    assert all(finite(run_dir / "checkpoints" / name) for name in checkpoints)
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0
    figures = [p.name for p in run_dir.rglob("figures/**/*") if p.is_file()]
    assert figures and not [name for name in figures if "epoch001" in name]
    assert not (run_dir / "metrics.json").exists()


def test_on_an_accelerator_the_guard_reads_the_losses_only_at_its_checks():
    """No sync per step: the losses are kept and checked every n steps; the first bad one is
    still named exactly."""
    guard = DivergenceGuard(check_every_n_steps=4, defer=True)
    strategy = SimpleNamespace(
        root_device=torch.device("cpu"), reduce_boolean_decision=lambda decision, all=True: decision
    )
    trainer = SimpleNamespace(strategy=strategy, world_size=1, log_every_n_steps=50,
                              global_step=0, current_epoch=2, optimizers=[],
                              checkpoint_callback=None, ckpt_path=None)  # fmt: skip
    guard.setup(trainer, None, "fit")
    for batch, value in enumerate([1.0, 2.0, float("inf")]):
        trainer.global_step = batch + 1
        guard.on_train_batch_end(trainer, None, {"loss": torch.tensor(value)}, None, batch)
    trainer.global_step = 4
    with pytest.raises(RunFailed, match=r"non-finite at epoch 2, batch 2 \(training step 3\)"):
        guard.on_train_batch_end(trainer, None, {"loss": torch.tensor(3.0)}, None, 3)


# ---- signals before and after the fit ------------------------------------------------------------
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_while_reading_the_data_stops_cleanly(
    compose, tmp_path, mnist_root, monkeypatch, signum, status
):
    def prepare_and_get_a_signal(self):
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler raises long before this ends

    monkeypatch.setattr(MNISTDataModule, "prepare_data", prepare_and_get_a_signal)
    with pytest.raises(RunInterrupted, match="before training started") as stop:
        run(compose([f"data.root={mnist_root}", *FAST]))
    assert stop.value.exit_code == status
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are put back
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigterm_during_the_final_evaluation_keeps_the_checkpoints(
    compose, tmp_path, mnist_root, monkeypatch
):
    real = MNISTDataModule.test_dataloader

    def test_batches_and_a_signal(self):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(self)

    monkeypatch.setattr(MNISTDataModule, "test_dataloader", test_batches_and_a_signal)
    with pytest.raises(RunInterrupted, match="after training finished") as stop:
        run(compose([f"data.root={mnist_root}", *FAST]))
    assert stop.value.exit_code == 143
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert f"ckpt_path={last}" in str(stop.value) and finite(last)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_second_ctrl_c_stops_at_once_without_saving(compose, tmp_path, mnist_root):
    """The first Ctrl-C asks for a stop after the batch; the second one stops at once, without
    writing over the last checkpoint (the step may be half done)."""
    cfg = compose([f"data.root={mnist_root}", *FAST, "trainer.max_epochs=3",
                   "+callbacks.stop._target_=tests.helpers.callbacks.SignalAt",
                   "+callbacks.stop.epoch=1", "+callbacks.stop.batch=1",
                   "+callbacks.stop.signum=2", "+callbacks.stop.times=2"])  # fmt: skip
    with pytest.raises(RunInterrupted, match="without saving") as stop:
        run(cfg)
    assert stop.value.exit_code == 130
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 0  # epoch 0's, untouched
    assert f"ckpt_path={last}" in str(stop.value)


# ---- train.py in a subprocess --------------------------------------------------------------------
def start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def signal_when(process: subprocess.Popen, ready: Path, signum: int, timeout: float = 120) -> str:
    """Send ``signum`` once ``ready`` exists; the process's stderr once it has exited."""
    deadline = time.monotonic() + timeout
    while not ready.exists():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"{ready} never appeared"
        time.sleep(0.1)
    process.send_signal(signum)
    try:
        return process.communicate(timeout=120)[1]
    finally:
        process.kill()


LONG_RUN = ["callbacks=none", "trainer.max_epochs=1000", "trainer.limit_train_batches=4",
            "trainer.limit_val_batches=2", "trainer.enable_progress_bar=false",
            "data.batch_size=32"]  # fmt: skip


@pytest.mark.slow
def test_sigterm_saves_last_ckpt_and_says_how_to_resume(compose, tmp_path, mnist_root):
    """``timeout``, ``docker stop`` or a cluster's preemption: exit 143 (today: 0), a last.ckpt
    that resumes, and the command that resumes it."""
    run_dir = tmp_path / "first"
    process = start(f"data.root={mnist_root}", *LONG_RUN, f"hydra.run.dir={run_dir}")
    last = run_dir / "checkpoints" / "last.ckpt"
    stderr = signal_when(process, last, signal.SIGTERM)
    assert process.returncode == 143, stderr[-3000:]
    assert "Traceback" not in stderr
    (error,) = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert "stopped by SIGTERM" in error and f"saved {last}" in error
    (command,) = [line.strip() for line in stderr.splitlines() if "train.py" in line]
    words = shlex.split(command)
    assert Path(words[0]).samefile(sys.executable) and words[-1] == f"ckpt_path={last}"
    assert Path(words[1]).samefile(REPO / "train.py")
    assert set(words[2:-1]) == {f"data.root={mnist_root}", *LONG_RUN}
    saved = torch.load(last, weights_only=True)
    assert finite(last) and saved["epoch"] >= 1  # saved at the signal, not at epoch 0's end
    # resume with that command (a shorter run), in-process
    overrides = [w for w in words[2:] if not w.startswith("trainer.max_epochs")]
    metrics = run(compose([*overrides, f"trainer.max_epochs={saved['epoch'] + 2}",
                           "trainer.limit_train_batches=2"], tmp_path / "resumed"))  # fmt: skip
    assert metrics["test/loss"] > 0
    resumed = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] > saved["global_step"]


@pytest.mark.slow
def test_ctrl_c_exits_130_without_a_traceback(tmp_path, mnist_root):
    run_dir = tmp_path / "run"
    process = start(f"data.root={mnist_root}", *LONG_RUN, f"hydra.run.dir={run_dir}")
    stderr = signal_when(process, run_dir / "checkpoints" / "last.ckpt", signal.SIGINT)
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "stopped by Ctrl-C" in stderr
    assert finite(run_dir / "checkpoints" / "last.ckpt")
    assert not (run_dir / "metrics.json").exists()


#: TINY_RUN without its figure settings (for callbacks=none)
NO_FIGURES = [o for o in TINY_RUN if not o.startswith("callbacks.")]


def test_the_epoch_s_checkpoint_exists_before_its_figures_draw(compose, tmp_path, mnist_root):
    cfg = compose(["callbacks=none", f"data.root={mnist_root}", *NO_FIGURES,
                   "+callbacks.slow._target_=tests.helpers.callbacks.SlowFigure",
                   "+callbacks.slow.chunks=1"])  # fmt: skip
    run(cfg)
    assert (tmp_path / "run" / "slow_figure_saw_checkpoint").read_text() == "True"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_while_a_figure_draws_is_honoured_at_once(compose, tmp_path, mnist_root, signum):
    """A figure of 50 chunks of 0.05 s each: the stop ends it at the next chunk, the run ends
    with last.ckpt saved and the resume command."""
    cfg = compose(["callbacks=none", f"data.root={mnist_root}", *NO_FIGURES[1:],
                   "trainer.max_epochs=3", "+callbacks.slow._target_=tests.helpers.callbacks."
                   "SlowFigure", f"+callbacks.slow.signum={int(signum)}",
                   "+callbacks.slow.every_n_epochs=1"])  # fmt: skip
    started = time.monotonic()
    with pytest.raises(RunInterrupted) as stop:
        run(cfg)
    assert time.monotonic() - started < 60
    assert stop.value.exit_code == 128 + signum and "Resume with" in str(stop.value)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 2  # no training after the stop
    assert not list((tmp_path / "run" / "figures").rglob("*.png"))


@pytest.mark.parametrize(
    ("callback", "where"),
    [
        ("AllocateTooMuch", "while training"),
        ("FigureTooLarge", "while drawing a figure"),
        ("AllocateTooMuch +callbacks.oom.where=test", "in the final evaluation"),
    ],
    ids=["step", "figure", "evaluation"],
)
def test_out_of_memory_is_a_message_with_the_checkpoint_and_a_smaller_batch(
    compose, tmp_path, mnist_root, callback, where
):
    name, *more = callback.split()
    cfg = compose(["callbacks=none", f"data.root={mnist_root}", *NO_FIGURES[1:],
                   "trainer.max_epochs=2", f"+callbacks.oom._target_=tests.helpers.callbacks.{name}",
                   *more])  # fmt: skip
    with pytest.raises(RunFailed) as failed:
        run(cfg)
    message = str(failed.value)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert message.startswith(f"out of memory {where}: ") and "can't allocate memory" in message
    assert f"The newest whole checkpoint is {last}" in message and last.is_file()
    assert message.splitlines()[-1].strip().endswith(f"data.batch_size=16 ckpt_path={last}")


def test_a_model_too_large_for_the_machine_is_refused_before_it_is_built(compose, mnist_root):
    cfg = compose([f"data.root={mnist_root}", *TINY_RUN, "model.net.hidden_dims=[100000,100000]"])
    with pytest.raises(UserError, match=r"20,182.8 M parameters need about 301 GB to train"):
        run(cfg)


@pytest.mark.slow
def test_a_checkpoint_write_that_fails_without_enospc_ends_like_a_full_disk(tmp_path, mnist_root):
    """torch.save reports a failed write as a RuntimeError ("file write failed"), not OSError:
    here the file-size limit refuses the checkpoint's bytes, as a full disk would."""
    import resource

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), f"data.root={mnist_root}", *NO_FIGURES,
         "callbacks=none", "logger=none", f"hydra.run.dir={run_dir}"],
        cwd=REPO, capture_output=True, text=True, timeout=300, preexec_fn=small_files,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert "writing failed" in error and "No checkpoint had been saved yet" in error
    assert not [p for p in (run_dir / "checkpoints").glob("*.ckpt")]  # nothing half-written
