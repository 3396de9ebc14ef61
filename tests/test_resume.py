"""Resume is exact: stopped and resumed from last.ckpt (at an epoch's end, in the middle of one,
during a validation, or inside a window of accumulated gradients), a run ends with the weights,
best checkpoint and metrics.json of a run that never stopped; for a deterministic AE, a VAE (noise
in its objective) and a denoising model (random corruption, and its figure draws some too). A
finished run is not resumed: it has nothing left to train."""

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ae_lab.errors import RunInterrupted, UserError
from ae_lab.run.callbacks import ResumableCheckpoint
from ae_lab.run.train import run
from tests.conftest import TINY_RUN

EPOCHS = 2
BATCHES = 4  # per epoch


def common(model: str, mnist_root: Path) -> list[str]:
    # the denoising panel draws corruption noise too, between the epochs
    panel = ["+callbacks.denoising._target_=ae_lab.figures.DenoisingPanel"]
    return [
        f"model={model}",
        f"data.root={mnist_root}",
        "logger=none",
        "callbacks=none",
        *(panel if model == "denoising_ae" else []),
        *TINY_RUN[1:6],
        f"trainer.limit_train_batches={BATCHES}",
        f"trainer.max_epochs={EPOCHS}",
    ]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, mnist_root):
    """Each model trained for EPOCHS epochs without a stop (shared by the tests below)."""
    from tests.conftest import compose_config

    made = {}

    def get(model: str, *extra: str) -> Path:
        if (model, extra) not in made:
            out = tmp_path_factory.mktemp(f"uninterrupted_{model}")
            run(compose_config([*common(model, mnist_root), *extra], out))
            made[model, extra] = out
        return made[model, extra]

    return get


def checkpoint(run_dir: Path, name: str = "last.ckpt") -> dict:
    return torch.load(run_dir / "checkpoints" / name, weights_only=True)


def best_of(run_dir: Path) -> tuple[str, float]:
    (state,) = [v for k, v in checkpoint(run_dir)["callbacks"].items() if "ModelCheckpoint" in k]
    return Path(state["best_model_path"]).name, float(state["best_model_score"])


def assert_same_run(resumed: Path, reference: Path, steps: int = EPOCHS * BATCHES) -> None:
    ours, theirs = checkpoint(resumed), checkpoint(reference)
    assert ours["global_step"] == theirs["global_step"] == steps  # last.ckpt is last
    torch.testing.assert_close(ours["state_dict"], theirs["state_dict"])
    torch.testing.assert_close(ours["optimizer_states"], theirs["optimizer_states"])
    assert best_of(resumed) == best_of(reference)  # the best counts the epochs before the stop
    metrics = json.loads((resumed / "metrics.json").read_text())
    assert metrics == json.loads((reference / "metrics.json").read_text())


@pytest.mark.parametrize("model", ["ae", "vae", "denoising_ae"])
def test_resuming_after_an_epoch_equals_never_stopping(compose, tmp_path, mnist_root,
                                                       uninterrupted, model):  # fmt: skip
    first, second = tmp_path / "first", tmp_path / "second"
    run(compose([*common(model, mnist_root), "trainer.max_epochs=1"], first))
    last = first / "checkpoints" / "last.ckpt"
    run(compose([*common(model, mnist_root), f"ckpt_path={last}"], second))
    assert_same_run(second, uninterrupted(model))


VALIDATION = ["+callbacks.stop.batch=0", "+callbacks.stop.in_validation=true"]


@pytest.mark.parametrize(
    ("where", "saved_epoch", "saved_step"),
    [
        (["+callbacks.stop.epoch=0", "+callbacks.stop.batch=2"], 0, 3),  # mid-epoch 0's training
        (["+callbacks.stop.epoch=0", *VALIDATION], 0, BATCHES),  # epoch 0's training done
        (["+callbacks.stop.epoch=1", *VALIDATION], 1, EPOCHS * BATCHES),  # all training done
    ],
    ids=["mid-epoch", "during-validation", "during-the-last-validation"],
)
def test_resuming_after_sigterm_equals_never_stopping(compose, tmp_path, mnist_root, uninterrupted,
                                                      where, saved_epoch, saved_step):  # fmt: skip
    """The checkpoint saved at the signal resumes at the next batch: same weights, same noise.
    A signal during a validation stops it at the next batch; the checkpoint is the state the
    validation began from, and the resumed run validates again (after the last epoch too: the
    run is not taken for a finished one)."""
    first, second = tmp_path / "first", tmp_path / "second"
    stop = ["+callbacks.stop._target_=tests.helpers.callbacks.SignalAt"]
    with pytest.raises(RunInterrupted) as interrupted:
        run(compose([*common("vae", mnist_root), *stop, *where], first))
    assert interrupted.value.exit_code == 143
    saved = checkpoint(first)
    assert (saved["epoch"], saved["global_step"]) == (saved_epoch, saved_step)
    last = first / "checkpoints" / "last.ckpt"
    run(compose([*common("vae", mnist_root), f"ckpt_path={last}"], second))
    assert_same_run(second, uninterrupted("vae"))


# ---- accumulated gradients ---------------------------------------------------------------------
ACCUMULATE = "trainer.accumulate_grad_batches=2"  # two windows of 2 batches per epoch
STOP = ["+callbacks.stop._target_=tests.helpers.callbacks.SignalAt", "+callbacks.stop.epoch=0"]


def test_resuming_inside_an_accumulation_window_equals_never_stopping(compose, tmp_path, mnist_root,
                                                                      uninterrupted):  # fmt: skip
    """Stopped after the first batch of a window, the checkpoint keeps the gradients of that
    batch: the resumed window steps with both batches, as the run that never stopped did (without
    them the weights drifted apart, with no warning)."""
    first, second = tmp_path / "first", tmp_path / "second"
    with pytest.raises(RunInterrupted):
        run(compose([*common("vae", mnist_root), ACCUMULATE, *STOP, "+callbacks.stop.batch=0"],
                    first))  # fmt: skip
    saved = checkpoint(first)
    assert saved["global_step"] == 0  # inside the first window: no step yet
    (state,) = [v for k, v in saved["callbacks"].items() if "ModelCheckpoint" in k]
    assert state["accumulated_gradients"].keys() == saved["state_dict"].keys()
    last = first / "checkpoints" / "last.ckpt"
    run(compose([*common("vae", mnist_root), ACCUMULATE, f"ckpt_path={last}"], second))
    assert_same_run(second, uninterrupted("vae", ACCUMULATE), steps=EPOCHS * BATCHES // 2)


def test_a_checkpoint_inside_a_window_without_its_gradients_is_refused(compose, tmp_path,
                                                                       mnist_root):  # fmt: skip
    """One written under DDP, by Lightning's own ModelCheckpoint or by an older version cannot
    resume exactly: refused, saying why and what to resume from instead."""
    first = tmp_path / "first"
    with pytest.raises(RunInterrupted):
        run(compose([*common("ae", mnist_root), ACCUMULATE, *STOP, "+callbacks.stop.batch=2"],
                    first))  # fmt: skip
    saved = checkpoint(first)
    for state in saved["callbacks"].values():
        state.pop("accumulated_gradients", None)
    partial = tmp_path / "partial.ckpt"
    torch.save(saved, partial)
    with pytest.raises(UserError) as refused:
        run(compose([*common("ae", mnist_root), ACCUMULATE, f"ckpt_path={partial}"]))
    assert str(refused.value).startswith(
        f"ckpt_path={partial} was saved inside a gradient accumulation window (after 1 of its "
        "trainer.accumulate_grad_batches=2 batches) without the gradients"
    )


# ---- a finished run ------------------------------------------------------------------------------
@pytest.mark.parametrize("max_epochs", [EPOCHS, 1])
def test_resuming_a_finished_run_is_refused_saying_how_to_go_on(
    compose, tmp_path, mnist_root, uninterrupted, max_epochs
):
    """It would train nothing and evaluate the best checkpoint again, without a word: refused
    before anything loads, with how to train longer and how to evaluate it."""
    last = uninterrupted("vae") / "checkpoints" / "last.ckpt"
    with pytest.raises(UserError) as refused:
        run(compose([*common("vae", mnist_root), f"trainer.max_epochs={max_epochs}",
                     f"ckpt_path={last}"]))  # fmt: skip
    message = str(refused.value)
    assert message.startswith(
        f"ckpt_path={last} is of a finished run: it has trained {EPOCHS} epochs "
        f"({EPOCHS * BATCHES} steps), which reaches trainer.max_epochs={max_epochs}, so resuming "
        f"would train nothing. To train longer, resume with trainer.max_epochs=M with M > {EPOCHS}"
    )
    assert message.endswith(f"eval.py ckpt_path={last}")
    assert not (tmp_path / "run" / "checkpoints").exists()


# ---- the best across directories -----------------------------------------------------------------
def earlier_state(dirpath: Path, scores: dict[str, float]) -> dict:
    paths = {str(dirpath / name): torch.tensor(score) for name, score in scores.items()}
    best = min(paths, key=paths.get)
    return {"monitor": "val/loss", "dirpath": str(dirpath), "best_model_path": best,
            "best_model_score": paths[best], "best_k_models": paths, "current_score": None,
            "kth_best_model_path": max(paths, key=paths.get), "kth_value": max(paths.values()),
            "last_model_path": str(dirpath / "last.ckpt")}  # fmt: skip


def test_the_best_is_carried_into_a_new_directory(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    (old / "best-epoch003.ckpt").write_bytes(b"weights of epoch 3")
    callback = ResumableCheckpoint(dirpath=new, monitor="val/loss", save_top_k=1)
    callback.load_state_dict(earlier_state(old, {"best-epoch003.ckpt": 0.25}))
    assert callback.best_model_score == pytest.approx(0.25)  # Lightning's own: None
    assert callback.best_model_path == str(new / "best-epoch003.ckpt")
    assert (new / "best-epoch003.ckpt").read_bytes() == b"weights of epoch 3"
    assert (old / "best-epoch003.ckpt").read_bytes() == b"weights of epoch 3"  # untouched
    assert callback.last_model_path == ""  # this run writes its own last.ckpt
    # a later epoch must beat the earlier best to replace it
    trainer = SimpleNamespace(
        strategy=SimpleNamespace(reduce_boolean_decision=lambda d, all=True: d)
    )
    assert not callback.check_monitor_top_k(trainer, current=torch.tensor(0.3))
    assert callback.check_monitor_top_k(trainer, current=torch.tensor(0.2))


def test_a_best_checkpoint_that_is_gone_is_said_and_not_carried(tmp_path, caplog):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    (old / "best-epoch001.ckpt").write_bytes(b"epoch 1")
    callback = ResumableCheckpoint(dirpath=new, monitor="val/loss", save_top_k=2)
    with caplog.at_level(logging.WARNING):
        callback.load_state_dict(
            earlier_state(old, {"best-epoch000.ckpt": 0.1, "best-epoch001.ckpt": 0.2})
        )
    assert "best-epoch000.ckpt" in caplog.text and "is gone" in caplog.text
    assert list(callback.best_k_models) == [str(new / "best-epoch001.ckpt")]
    assert callback.best_model_score == pytest.approx(0.2)


def test_resuming_in_the_same_directory_keeps_lightnings_behaviour(tmp_path):
    callback = ResumableCheckpoint(dirpath=tmp_path, monitor="val/loss")
    callback.load_state_dict(earlier_state(tmp_path, {"best-epoch000.ckpt": 0.5}))
    assert callback.best_model_path == str(tmp_path / "best-epoch000.ckpt")
    assert callback.last_model_path == str(tmp_path / "last.ckpt")
