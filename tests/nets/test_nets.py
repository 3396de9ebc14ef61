import pytest
import torch

from ae_lab.nets import MLP, conv_autoencoder, mlp_autoencoder
from ae_lab.nets.activations import ACTIVATIONS
from ae_lab.nets.conv import feature_sizes

IMAGE_SIZES = [(3, 218, 178), (3, 64, 64), (3, 88, 88), (1, 28, 28), (3, 37, 23)]


@pytest.mark.parametrize("shape", IMAGE_SIZES)
def test_conv_reconstruction_has_exactly_the_input_size(shape):
    encoder, decoder = conv_autoencoder(shape, latent_dim=8, code_dim=16, channels=[4, 8, 8, 8, 8])
    x = torch.rand(2, *shape)
    codes = encoder(x)
    assert codes.shape == (2, 16)
    assert decoder(codes[:, :8]).shape == x.shape


def test_conv_sizes_follow_the_stride_two_rule():
    assert feature_sizes(218, 178, 5) == [
        (218, 178),
        (109, 89),
        (55, 45),
        (28, 23),
        (14, 12),
        (7, 6),
    ]


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 8, 6)])
def test_mlp_shapes_and_sizes_come_from_the_data(shape):
    encoder, decoder = mlp_autoencoder(shape, latent_dim=5, code_dim=10, hidden_dims=[32, 16])
    assert encoder.mlp.linears[0].in_features == torch.Size(shape).numel()
    x = torch.rand(3, *shape)
    assert encoder(x).shape == (3, 10)
    assert decoder(torch.randn(3, 5)).shape == x.shape


@pytest.mark.parametrize(
    ("shape", "build"),
    [
        ((1, 12, 12), lambda s: mlp_autoencoder(s, 4, 4, hidden_dims=[16])),
        ((3, 20, 18), lambda s: conv_autoencoder(s, 4, 4, channels=[4, 8], dense_dims=[16])),
    ],
)
def test_batch_independence_and_every_parameter_gets_a_gradient(shape, build):
    encoder, decoder = build(shape)
    parameters = [*encoder.named_parameters(), *decoder.named_parameters()]
    encoder.eval(), decoder.eval()  # batch norm in eval mode: examples must not mix
    x = torch.rand(4, *shape, requires_grad=True)
    decoder(encoder(x))[0].sum().backward()
    assert x.grad[1:].abs().sum() == 0, "example 0's output depends on other examples"
    assert x.grad[0].abs().sum() > 0

    encoder.train(), decoder.train()
    for _, p in parameters:
        p.grad = None
    decoder(encoder(torch.rand(4, *shape))).square().mean().backward()
    assert not [name for name, p in parameters if p.grad is None or not p.grad.abs().sum() > 0]


def test_linear_mlp_is_one_matrix():
    mlp = MLP(6, [5], 4, activation="identity", bias=False)
    assert mlp.is_linear
    x = torch.randn(3, 6)
    torch.testing.assert_close(mlp(x), x @ mlp.as_matrix().T)
    with pytest.raises(ValueError, match="no bias and no activation"):
        MLP(6, [5], 4, activation="relu", bias=False).as_matrix()


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_carries_its_true_derivative(name):
    activation = ACTIVATIONS[name]
    pre = torch.linspace(-4, 4, 101, dtype=torch.float64).requires_grad_(True)
    (slope,) = torch.autograd.grad(activation(pre).sum(), pre)
    torch.testing.assert_close(activation.derivative(pre.detach()), slope)
