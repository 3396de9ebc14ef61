"""A stop (SIGTERM, Ctrl-C) during a long evaluation is honoured at the end of the batch under way:
in a validation of the fit, the run ends with the exit status and message of any other stop and a
last.ckpt holding the state the validation started from, which resumes to the weights of a run that
never stopped (the half-done validation is neither logged nor scored, and is done again); in the
final evaluation, and between it and metrics.json, the run ends keeping its checkpoints."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import ae_lab.run.train
from ae_lab.errors import RunFailed, RunInterrupted
from ae_lab.run.train import run
from tests.conftest import REPO
from tests.helpers.slow_evaluation import RECORD
from tests.test_resume import assert_same_run, best_of, checkpoint

#: Validation batches (of 4 images: all of them) per epoch: slowed, 13 of them outlast a stop.
VAL_BATCHES = 15
SLOW = "+callbacks.slow._target_=tests.helpers.slow_evaluation.SlowEvaluation"
#: Seconds per batch of a slowed evaluation, and the bound on how long a stop may take in-process.
SECONDS, BOUND = 1, 10
#: NaN weights when epoch 1 starts: the run fails at its first step, keeping epoch 0's checkpoints.
CRASH_IN_EPOCH_1 = ["+callbacks.poison._target_=tests.helpers.callbacks.PoisonWeights",
                    "+callbacks.poison.epoch=1"]  # fmt: skip


def settings(mnist_root: Path, *more: str, logger: str = "none") -> list[str]:
    """A VAE (it draws noise while validating too) for 2 epochs of 4 training batches."""
    return [
        "model=vae", f"data.root={mnist_root}", f"logger={logger}", "callbacks=none",
        "trainer.max_epochs=2", "trainer.limit_train_batches=4",
        f"trainer.limit_val_batches={VAL_BATCHES}", "trainer.limit_test_batches=2",
        "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
        "trainer.log_every_n_steps=1", "data.batch_size=4", *more,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, mnist_root) -> Path:
    from tests.conftest import compose_config

    out = tmp_path_factory.mktemp("uninterrupted")
    run(compose_config(settings(mnist_root), out))
    return out


def stopped_after(run_dir: Path) -> tuple[float, list[int]]:
    """Seconds from the signal to now, and the evaluation batches started after it."""
    record = json.loads((run_dir / RECORD).read_text())
    return time.time() - record["signalled"], record["after"]


def scalar_tags(run_dir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = {p.parent for p in (run_dir / "tensorboard").rglob("events.out.tfevents.*")}
    reader = EventAccumulator(str(events), size_guidance={"scalars": 0})
    reader.Reload()
    return set(reader.Tags()["scalars"])


# ---- a validation of the fit ---------------------------------------------------------------------
def test_sigterm_in_a_slow_validation_stops_at_its_next_batch_and_resumes_exactly(
    compose, tmp_path, mnist_root, uninterrupted
):
    """SIGTERM at validation batch 1 of epoch 0, whose batches take 1 s each: the run ends
    before batch 2 starts, saying what any stop says. last.ckpt is the state before the
    validation (epoch 0, step 4); no val point was logged, no best saved. Resumed, the run does
    that validation again (the same noise: the saved random states are those it started with)
    and ends where the run that never stopped ended. Here it crashes in epoch 1 first, and is
    resumed from the last.ckpt of the validation it did again: that one marks no validation to
    redo, so the run still ends where the run that never stopped ended."""
    first, second, third = tmp_path / "first", tmp_path / "second", tmp_path / "third"
    slow = [SLOW, f"+callbacks.slow.seconds={SECONDS}", "+callbacks.slow.signum=15"]
    with pytest.raises(RunInterrupted) as stop:
        run(compose(settings(mnist_root, *slow, logger="tensorboard"), first))
    seconds, after = stopped_after(first)
    assert after == [] and seconds < BOUND  # the whole validation would take 13 s more
    assert stop.value.exit_code == 143
    last = first / "checkpoints" / "last.ckpt"
    head, resume = str(stop.value).splitlines()
    assert head == (f"stopped by SIGTERM in epoch 0 after step 4 (4 of its 4 batches); "
                    f"saved {last}. Resume with:")  # fmt: skip
    assert resume.strip().endswith(f"ckpt_path={last}")
    saved = checkpoint(first)
    assert (saved["epoch"], saved["global_step"]) == (0, 4)
    assert sorted(p.name for p in (first / "checkpoints").iterdir()) == ["last.ckpt"]
    tags = scalar_tags(first)
    assert [t for t in tags if "train" in t.lower()]  # the steps' points were logged
    assert not [t for t in tags if "val" in t.lower()]  # the validation's were not

    with pytest.raises(RunFailed):  # resumed, and crashed in epoch 1: last.ckpt is epoch 0's
        run(compose(settings(mnist_root, f"ckpt_path={last}", *CRASH_IN_EPOCH_1), second))
    assert checkpoint(second)["epoch"] == 0
    assert best_of(second)[0] == "best-epoch000.ckpt"  # the validation was done, and scored
    again = second / "checkpoints" / "last.ckpt"
    run(compose(settings(mnist_root, f"ckpt_path={again}"), third))
    assert_same_run(third, uninterrupted)


@pytest.mark.slow
def test_train_py_stopped_in_a_slow_validation_exits_143_within_seconds(
    compose, tmp_path, mnist_root, uninterrupted
):
    """The real process, signalled from outside in a validation of 3 s per batch: it saves
    last.ckpt within seconds and exits 143 with one error line and the resume command, whose
    last.ckpt resumes to the weights of the run that never stopped."""
    run_dir, marker = tmp_path / "first", tmp_path / "validating"
    last = run_dir / "checkpoints" / "last.ckpt"  # none before: the first validation is stopped
    slow = [SLOW, "+callbacks.slow.seconds=3", f"+callbacks.slow.marker={marker}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    process = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *settings(mnist_root, *slow),
         f"hydra.run.dir={run_dir}"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the validation never started"
            time.sleep(0.05)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        while not last.exists() and process.poll() is None:
            time.sleep(0.05)
        saved = time.monotonic() - signalled
        stderr = process.communicate(timeout=120)[1]
        ended = time.monotonic() - signalled
    finally:
        process.kill()
    assert process.returncode == 143, stderr[-3000:]
    # the validation had 13 batches, 39 s, left (the bounds allow for a loaded machine, whose
    # interpreter may take seconds to exit)
    assert saved < BOUND and ended < 30
    assert stopped_after(run_dir)[1] == [] and "Traceback" not in stderr
    (error,) = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert error == (f"error: stopped by SIGTERM in epoch 0 after step 4 (4 of its 4 batches); "
                     f"saved {last}. Resume with:")  # fmt: skip
    (command,) = [line.strip() for line in stderr.splitlines() if "train.py" in line]
    assert command.endswith(f"ckpt_path={last}")
    run(compose(settings(mnist_root, f"ckpt_path={last}"), tmp_path / "resumed"))
    assert_same_run(tmp_path / "resumed", uninterrupted)


# ---- the final evaluation, and after it ----------------------------------------------------------
@pytest.mark.parametrize("stage", ["validate", "test"])
def test_sigterm_in_a_slow_final_evaluation_stops_at_its_next_batch(
    compose, tmp_path, mnist_root, stage
):
    """The final validation or test, 15 batches of 1 s, signalled at its batch 1: the run ends
    before batch 2 starts, with exit 143, the checkpoints kept and no metrics.json."""
    slow = [SLOW, f"+callbacks.slow.seconds={SECONDS}", f"+callbacks.slow.stage={stage}",
            "+callbacks.slow.signum=15"]  # fmt: skip
    cfg = compose(settings(mnist_root, "trainer.max_epochs=1", "trainer.limit_test_batches=15",
                           *slow))  # fmt: skip
    with pytest.raises(RunInterrupted, match="after training finished") as stop:
        run(cfg)
    seconds, after = stopped_after(tmp_path / "run")
    assert after == [] and seconds < BOUND
    assert stop.value.exit_code == 143
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert last.is_file() and f"eval.py ckpt_path={last}" in str(stop.value)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_signal_after_the_evaluation_says_training_finished(
    compose, tmp_path, mnist_root, monkeypatch
):
    """Outside Lightning's loops (here while PCA is fitted for metrics.json), SIGTERM stops the
    run at once; the message says training finished and the checkpoints are kept."""

    signalled = []

    def pca_and_a_signal(model, datamodule):
        signalled.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises long before this ends

    monkeypatch.setattr(ae_lab.run.train, "pca_metrics", pca_and_a_signal)
    with pytest.raises(RunInterrupted, match="after training finished") as stop:
        run(compose(settings(mnist_root, "trainer.max_epochs=1")))
    assert time.monotonic() - signalled[0] < 4 and stop.value.exit_code == 143
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert f"eval.py ckpt_path={last}" in str(stop.value)
    assert torch.load(last, weights_only=True)["global_step"] == 4
    assert not (tmp_path / "run" / "metrics.json").exists()
