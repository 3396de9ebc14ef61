import pytest
import torch
from torch import nn

from ae_lab.models.jacobian import jacobian_frobenius_sq
from ae_lab.nets import conv_autoencoder, mlp_autoencoder
from ae_lab.nets.activations import ACTIVATIONS


def brute_force(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """mean_b ||d encoder(x_b) / d x_b||_F^2 from full autograd Jacobians, one example at a time."""
    norms = []
    for example in x:
        jac = torch.autograd.functional.jacobian(
            lambda v: encoder(v.unsqueeze(0)).squeeze(0), example
        )
        norms.append(jac.square().sum())
    return torch.stack(norms).mean()


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("hidden", [[], [7], [9, 6]])
def test_closed_form_equals_brute_force(activation, hidden):
    torch.manual_seed(0)
    encoder, _ = mlp_autoencoder((1, 3, 4), 5, 5, hidden_dims=hidden, activation=activation)
    x = torch.randn(4, 1, 3, 4, dtype=torch.float64)
    encoder = encoder.double()
    torch.testing.assert_close(jacobian_frobenius_sq(encoder, x), brute_force(encoder, x))


def test_wide_first_layer_takes_the_other_branch_and_still_agrees():
    torch.manual_seed(1)
    encoder, _ = mlp_autoencoder((1, 2, 2), 3, 3, hidden_dims=[11, 5])  # 11 > 4 pixels
    encoder = encoder.double()
    x = torch.randn(3, 1, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(jacobian_frobenius_sq(encoder, x), brute_force(encoder, x))


def test_generic_path_for_other_encoders():
    torch.manual_seed(0)
    encoder, _ = conv_autoencoder((1, 6, 5), 3, 3, channels=[2, 3])
    encoder = encoder.double().eval()
    x = torch.randn(2, 1, 6, 5, dtype=torch.float64)
    torch.testing.assert_close(jacobian_frobenius_sq(encoder, x), brute_force(encoder, x))


def test_is_not_the_gradient_of_the_summed_code():
    """The shortcut ||d(sum z)/dx||^2 = ||J^T 1||^2 differs from ||J||_F^2."""
    torch.manual_seed(0)
    encoder, _ = mlp_autoencoder((1, 2, 3), 4, 4, hidden_dims=[5])
    x = torch.randn(3, 1, 2, 3, requires_grad=True)
    (grad,) = torch.autograd.grad(encoder(x).sum(), x)
    shortcut = grad.flatten(1).square().sum(1).mean()
    assert not torch.isclose(jacobian_frobenius_sq(encoder, x), shortcut, rtol=1e-2)


def test_penalty_trains_the_encoder_weights():
    encoder, _ = mlp_autoencoder((1, 3, 3), 2, 2, hidden_dims=[4])
    jacobian_frobenius_sq(encoder, torch.randn(5, 1, 3, 3)).backward()
    assert all(p.grad is not None for n, p in encoder.named_parameters() if "weight" in n)


def test_generic_path_freezes_batch_norm_and_leaves_the_mode_alone():
    """In training mode a conv encoder's per-example Jacobian uses the running statistics."""
    torch.manual_seed(0)
    encoder, _ = conv_autoencoder((1, 6, 5), 3, 3, channels=[2, 3])
    encoder = encoder.double().train()
    x = torch.randn(2, 1, 6, 5, dtype=torch.float64)
    value = jacobian_frobenius_sq(encoder, x)
    assert encoder.training and all(m.training for m in encoder.modules())
    torch.testing.assert_close(value, brute_force(encoder.eval(), x))
