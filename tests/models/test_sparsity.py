"""Ng's KL sparsity penalty: zero exactly when every unit's mean (sigmoid) activation over the batch
is the target, positive otherwise, its gradient moves the mean activations towards the target, and
a short training with it lowers the code's mean activation."""

import math

import pytest
import torch

from ae_lab.models import KLSparsityPenalty
from ae_lab.run.train import run
from tests.conftest import TINY_RUN


def logit(p: torch.Tensor | float) -> torch.Tensor:
    p = torch.as_tensor(p, dtype=torch.float64)
    return torch.log(p / (1 - p))


@pytest.mark.parametrize("target", [0.05, 0.3])
def test_zero_when_every_mean_activation_is_the_target(target):
    penalty = KLSparsityPenalty(weight=1.0, target=target)
    # each unit's activations differ from image to image but average to the target
    spread = torch.tensor([[-0.02], [0.02], [-0.01], [0.01]], dtype=torch.float64)
    code = logit(target + spread * torch.linspace(0.5, 1.0, 6, dtype=torch.float64))
    assert torch.sigmoid(code).mean(0).sub(target).abs().max() < 1e-12
    value = penalty.value(None, None, code, slice(0, 6))
    assert value.abs() < 1e-6
    assert penalty.diagnostics(code)["mean_activation"] == pytest.approx(target, abs=1e-6)


def test_positive_otherwise_and_summed_over_units():
    penalty = KLSparsityPenalty(weight=1.0, target=0.05)
    code = torch.zeros(8, 3)  # every activation 0.5
    per_unit = torch.tensor(0.05 * math.log(0.05 / 0.5) + 0.95 * math.log(0.95 / 0.5))
    value = penalty.value(None, None, code, slice(0, 3))
    torch.testing.assert_close(value, 3 * per_unit)
    assert value > 0
    # a per-batch quantity: repeating the batch changes nothing
    torch.testing.assert_close(penalty.value(None, None, code.repeat(4, 1), slice(0, 3)), value)
    # far from the target in either direction, and saturated codes stay finite
    assert penalty.value(None, None, torch.full((4, 2), -30.0), slice(0, 2)) > 0
    assert torch.isfinite(penalty.value(None, None, torch.full((4, 2), 1e4), slice(0, 2)))


def test_the_target_must_be_a_fraction():
    for target in (0.0, 1.0, -0.1, 2.0):
        with pytest.raises(ValueError, match="target"):
            KLSparsityPenalty(weight=1.0, target=target)


@pytest.mark.parametrize("start", [0.0, -6.0])  # mean activations 0.5 and 0.0025
def test_its_gradient_moves_the_mean_activation_towards_the_target(start):
    penalty = KLSparsityPenalty(weight=1.0, target=0.05)
    torch.manual_seed(0)
    code = (start + 0.1 * torch.randn(16, 4)).requires_grad_()
    before = torch.sigmoid(code).mean(0).detach()
    optimizer = torch.optim.SGD([code], lr=1.0)
    penalty.value(None, None, code, slice(0, 4)).backward()
    optimizer.step()
    after = torch.sigmoid(code).mean(0).detach()
    assert ((after - 0.05).abs() < (before - 0.05).abs()).all()


def test_a_short_training_lowers_the_mean_activation(compose, tmp_path, mnist_root):
    """The same tiny run without (weight 0) and with the penalty: the code's mean sigmoid
    activation on validation images ends closer to the target, and the penalty term is smaller."""
    common = ["model=ae", "model/penalty=kl_sparsity", "model.penalty.target=0.05",
              "model.latent_dim=16", "model.net.hidden_dims=[64]", "callbacks=none",
              f"data.root={mnist_root}", *TINY_RUN[:7], "trainer.max_epochs=2",
              "trainer.limit_train_batches=4", "model.optimizer.lr=3e-3"]  # fmt: skip
    metrics = {}
    for weight in (0.0, 5.0):
        cfg = compose([*common, f"model.penalty.weight={weight}"], tmp_path / f"w{weight}")
        metrics[weight] = run(cfg)
    free, sparse = metrics[0.0], metrics[5.0]
    assert 0 < sparse["val/mean_activation"] < free["val/mean_activation"]
    assert abs(sparse["val/mean_activation"] - 0.05) < abs(free["val/mean_activation"] - 0.05)
    assert sparse["val/penalty"] < free["val/penalty"]


@pytest.mark.parametrize("target", [0, 1, 1.5])
def test_a_target_outside_0_1_is_refused_before_training(compose, target):
    from ae_lab.run.checks import check_config

    cfg = compose(["model/penalty=kl_sparsity", f"model.penalty.target={target}"])
    with pytest.raises(Exception, match=f"model.penalty.target={target}: must be > 0 and < 1"):
        check_config(cfg)


def test_without_squash_the_penalty_reads_a_code_already_in_0_1():
    """ae_bakeoff's sparse code is sigmoid(h) itself: squashing it again would push the wrong
    quantity. With squash=False, a code whose units average the target costs nothing."""
    code = torch.full((8, 5), 0.25)
    assert KLSparsityPenalty(target=0.25, squash=False).value(None, None, code, None) < 1e-6
    squashed = KLSparsityPenalty(target=0.25, squash=True)
    assert squashed.value(None, None, code, None) > 0.01  # sigmoid(0.25) = 0.56, far from 0.25
    torch.testing.assert_close(squashed.mean_activation(code), torch.sigmoid(code).mean(0))
