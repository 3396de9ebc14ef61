"""``ckpt_path=`` resumes the same run, ``init_from=`` starts a new one from a checkpoint's weights.

A resume whose data, model, objective, optimizer or steps differ from the checkpoint's is refused
before anything loads, naming what differs (no silent run on other data, no KeyError from another
optimizer's state); what says only where or how the run reads and logs may differ. ``init_from``
loads only the weights: any data and optimizer, epoch 0, no best carried over.
"""

import logging
import shutil
from pathlib import Path

import pytest
import torch

from ae_lab.errors import UserError
from ae_lab.run.train import run, setup
from tests.conftest import TINY_RUN

BATCHES = 4  # per epoch


def common(mnist_root: Path, *extra: str) -> list[str]:
    return ["model=ae", f"data.root={mnist_root}", "logger=none", "callbacks=none",
            *TINY_RUN[1:6], f"trainer.limit_train_batches={BATCHES}", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory, mnist_root) -> Path:
    """``last.ckpt`` of an AE trained on MNIST for one epoch of two (shared by the tests)."""
    from tests.conftest import compose_config

    out = tmp_path_factory.mktemp("one_epoch")
    stop = ["+callbacks.stop._target_=tests.helpers.callbacks.SignalAt", "+callbacks.stop.epoch=1",
            "+callbacks.stop.batch=0"]  # fmt: skip
    with pytest.raises(Exception, match="stopped by SIGTERM"):  # at epoch 1's first batch
        run(compose_config(common(mnist_root, "trainer.max_epochs=2", *stop), out))
    return out / "checkpoints" / "last.ckpt"


def refused(compose, overrides: list[str], out: Path) -> str:
    """The one-line refusal of a run of ``overrides``; nothing was trained or written for it."""
    with pytest.raises(UserError) as error:
        run(compose(overrides, out))
    assert not (out / "checkpoints").exists()
    message = str(error.value)
    assert "\n" not in message
    return message


# ---- resuming: the same run --------------------------------------------------------------------
def test_resuming_on_other_data_is_refused(compose, tmp_path, mnist_root, fashion_root,
                                           one_epoch):  # fmt: skip
    """An MNIST checkpoint resumed on Fashion-MNIST ran without a word, its MNIST best never
    beaten: metrics.json reported MNIST weights on Fashion-MNIST."""
    message = refused(compose, [*common(mnist_root, "trainer.max_epochs=2"), "data=fashion_mnist",
                                f"data.root={fashion_root}", f"ckpt_path={one_epoch}"],
                      tmp_path / "run")  # fmt: skip
    assert message.startswith(f"ckpt_path={one_epoch} is a checkpoint of another run: ")
    assert "data=fashion_mnist (checkpoint: mnist)" in message
    assert f"init_from={one_epoch}" in message


@pytest.mark.parametrize("optimizer", ["sgd", "soap"])
def test_resuming_with_another_optimizer_is_refused_not_a_keyerror(
    compose, tmp_path, mnist_root, one_epoch, optimizer
):
    """Lightning loaded Adam's state into SGD or SOAP: a KeyError traceback (momentum,
    correct_bias)."""
    overrides = common(mnist_root, "trainer.max_epochs=2", f"model/optimizer={optimizer}",
                       f"ckpt_path={one_epoch}")  # fmt: skip
    message = refused(compose, overrides, tmp_path / "run")
    assert f"model/optimizer={optimizer} (checkpoint: adam)" in message


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("model.optimizer.lr=0.01", "model.optimizer.lr=0.01 (checkpoint: 0.001)"),
        ("model.likelihood=bernoulli", "model.likelihood='bernoulli' (checkpoint: 'gaussian')"),
        ("model=vae", "model=vae (checkpoint: ae)"),
        ("model/corruption=masking", "model/corruption=masking (checkpoint: None)"),
        ("data.val_fraction=0.2", "data.val_fraction=0.2 (checkpoint: 0.1)"),
        ("data.binarize=threshold", "data.binarize='threshold' (checkpoint: false)"),
        ("seed=1", "seed=1 (checkpoint: 0)"),
        ("trainer.accumulate_grad_batches=2", "trainer.accumulate_grad_batches=2 (checkpoint: 1)"),
    ],
)
def test_a_resume_that_changes_what_defines_the_run_is_refused(
    compose, tmp_path, mnist_root, one_epoch, override, said
):
    message = refused(compose, common(mnist_root, "trainer.max_epochs=2", override,
                                      f"ckpt_path={one_epoch}"), tmp_path / "run")  # fmt: skip
    assert said in message, message
    assert message.endswith(
        "Resume with the settings it was trained with, or start a new run from its weights with "
        f"init_from={one_epoch}"
    )


def test_the_first_differences_are_named_and_the_rest_counted(compose, tmp_path, mnist_root,
                                                              one_epoch):  # fmt: skip
    message = refused(compose, common(mnist_root, "trainer.max_epochs=2", "model.optimizer.lr=0.01",
                                      "model.latent_dim=64", "data.val_fraction=0.2",
                                      "trainer.gradient_clip_val=1.0", "model.net.activation=gelu",
                                      f"ckpt_path={one_epoch}"), tmp_path / "run")  # fmt: skip
    assert message.count("(checkpoint: ") == 4 and "; and 1 more." in message


def test_where_and_how_a_run_reads_and_logs_may_differ(compose, tmp_path, mnist_root, one_epoch):
    """A moved dataset, a longer run, another logger, evaluation-only settings: the same run."""
    moved = tmp_path / "moved_mnist"
    shutil.copytree(mnist_root, moved)
    out = tmp_path / "run"
    run(compose([*common(moved, "trainer.max_epochs=3"), "logger=csv", "++model.nll_samples=7",
                 "model.optimizer.fused=false", "trainer.log_every_n_steps=3",
                 f"ckpt_path={one_epoch}"], out))  # fmt: skip
    saved = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 3 * BATCHES  # went on from the checkpoint's step 4


def test_a_smaller_batch_may_resume_a_run_that_ran_out_of_memory(
    compose, tmp_path, mnist_root, one_epoch
):
    """The command printed after an out-of-memory halves data.batch_size: it must resume."""
    out = tmp_path / "run"
    run(compose([*common(mnist_root, "trainer.max_epochs=2"), "data.batch_size=16",
                 f"ckpt_path={one_epoch}"], out))  # fmt: skip
    saved = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] > BATCHES  # went on from the checkpoint's step


def test_a_schedule_sized_by_the_run_cannot_be_made_longer(compose, tmp_path, mnist_root):
    """Its length (T_max) came from the run's and is restored with the checkpoint: a longer run
    would go on past the end of the schedule."""
    first = tmp_path / "first"
    run(compose(common(mnist_root, "trainer.max_epochs=1", "model/scheduler=cosine"), first))
    last = first / "checkpoints" / "last.ckpt"
    message = refused(compose, common(mnist_root, "trainer.max_epochs=2", "model/scheduler=cosine",
                                      f"ckpt_path={last}"), tmp_path / "run")  # fmt: skip
    assert "trainer.max_epochs=2 (checkpoint: 1)" in message and "init_from=" in message


def test_a_checkpoint_without_its_run_config_is_checked_by_its_hyperparameters(
    compose, tmp_path, mnist_root, one_epoch
):
    """An older checkpoint holds no run config: its model's hyperparameters (the optimizer among
    them) are compared, beside the weight shapes."""
    old = tmp_path / "old.ckpt"
    checkpoint = torch.load(one_epoch, weights_only=True)
    del checkpoint["callbacks"]["RunConfig"]
    torch.save(checkpoint, old)
    message = refused(compose, common(mnist_root, "trainer.max_epochs=2", "model/optimizer=sgd",
                                      f"ckpt_path={old}"), tmp_path / "run")  # fmt: skip
    assert "model.optimizer._target_='torch.optim.SGD' (checkpoint: 'torch.optim.Adam')" in message


# ---- init_from: a new run from the weights ------------------------------------------------------
def test_init_from_loads_only_the_weights(compose, tmp_path, mnist_root, fashion_root, one_epoch):
    """Fine-tuning on other data with another optimizer: the checkpoint's weights, nothing else."""
    overrides = [*common(mnist_root, "trainer.max_epochs=1"), "data=fashion_mnist",
                 f"data.root={fashion_root}", "model/optimizer=sgd",
                 f"init_from={one_epoch}"]  # fmt: skip
    _, model, _ = setup(compose(overrides, tmp_path / "setup"))
    torch.testing.assert_close(
        model.state_dict(), torch.load(one_epoch, weights_only=True)["state_dict"]
    )


def test_init_from_starts_a_new_run(compose, tmp_path, mnist_root, fashion_root, one_epoch,
                                    caplog):  # fmt: skip
    """Epoch 0, a new optimizer (SGD here, Adam there), no best carried over, its own name."""
    out = tmp_path / "run"
    overrides = [*common(mnist_root, "trainer.max_epochs=1"), "data=fashion_mnist",
                 f"data.root={fashion_root}", "model/optimizer=sgd",
                 f"init_from={one_epoch}"]  # fmt: skip
    with caplog.at_level(logging.INFO, logger="ae_lab.run.checkpoints"):
        run(compose(overrides, out))
    assert f"init_from={one_epoch}: a new run starts from the model weights" in caplog.text
    saved = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert (saved["epoch"], saved["global_step"]) == (0, BATCHES)  # one epoch, from epoch 0
    assert "momentum_buffer" in saved["optimizer_states"][0]["state"][0]  # SGD's own state
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "best-epoch000.ckpt",
        "last.ckpt",
    ]  # only its own: the earlier run's best is not carried
    assert "init_from: " in saved["callbacks"]["RunConfig"]["config"]  # recorded in the run


def test_init_from_and_ckpt_path_together_are_refused(compose, tmp_path, mnist_root, one_epoch):
    message = refused(compose, common(mnist_root, "trainer.max_epochs=2", f"init_from={one_epoch}",
                                      f"ckpt_path={one_epoch}"), tmp_path / "run")  # fmt: skip
    assert message.startswith(f"init_from={one_epoch} and ckpt_path={one_epoch} are both set")


def test_a_run_started_with_init_from_resumes_with_its_command(compose, tmp_path, mnist_root,
                                                               one_epoch):  # fmt: skip
    """Its resume command repeats init_from=: that is its own run's, so it resumes."""
    first = tmp_path / "tuned"
    run(compose(common(mnist_root, "trainer.max_epochs=1", f"init_from={one_epoch}"), first))
    last = first / "checkpoints" / "last.ckpt"
    out = tmp_path / "resumed"
    run(compose(common(mnist_root, "trainer.max_epochs=2", f"init_from={one_epoch}",
                       f"ckpt_path={last}"), out))  # fmt: skip
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == (
        2 * BATCHES
    )


def test_init_from_another_model_is_refused(compose, tmp_path, mnist_root, one_epoch):
    message = refused(compose, common(mnist_root, "model.latent_dim=8", f"init_from={one_epoch}"),
                      tmp_path / "run")  # fmt: skip
    assert message.startswith(f"init_from={one_epoch} holds another model's weights: ")
    assert "latent_dim=128 (this run: 8)" in message
