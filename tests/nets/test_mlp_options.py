"""The dense nets' options for ae_bakeoff's protocol: batch norm in the hidden layers, an activation
on the code, widths shrinking geometrically; each checked against ae_bakeoff's own modules rebuilt
here, and the plain MLP left as it was."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ae_lab.models.jacobian import jacobian_frobenius_sq
from ae_lab.nets import MLP, mlp_autoencoder
from ae_lab.nets.mlp import geometric_widths


def bakeoff_units(features: int, latent: int, layers: int = 3) -> list[int]:
    """ae_bakeoff's ``DenseEncoder._get_units`` (src/models/encoders.py), verbatim."""
    shrinkage = int(pow(features // latent, 1 / layers))
    return [features // (shrinkage**i) for i in range(layers)]


@pytest.mark.parametrize(("code", "hidden"), [(20, [341, 113]), (40, [512, 256]), (2, [146, 20])])
def test_geometric_widths_are_ae_bakeoff_s(code, hidden):
    # (2: 512 ** (1/3) is 7.999..., which ae_bakeoff's int() makes 7; so is ours)
    assert geometric_widths(1024, code, 3) == hidden == bakeoff_units(1024, code)[1:]


def bakeoff_dense(widths: list[int], final: nn.Module | None = None) -> nn.Sequential:
    """ae_bakeoff's dense layers: ``Linear(no bias) -> BatchNorm1d -> ReLU`` per hidden layer, then
    ``Linear`` (with bias) and the final activation, if any."""
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-2], widths[1:-1], strict=True):
        layers += [nn.Linear(a, b, bias=False), nn.BatchNorm1d(b), nn.ReLU()]
    layers.append(nn.Linear(widths[-2], widths[-1]))
    return nn.Sequential(*layers, *([final] if final is not None else []))


def copy_into(ours: MLP, theirs: nn.Sequential) -> None:
    linears = [m for m in theirs if isinstance(m, nn.Linear)]
    norms = [m for m in theirs if isinstance(m, nn.BatchNorm1d)]
    assert len(linears) == len(ours.linears) and len(norms) == len(ours.norms)
    with torch.no_grad():
        for mine, other in zip([*ours.linears, *ours.norms], [*linears, *norms], strict=True):
            assert mine.state_dict().keys() == other.state_dict().keys()
            for key, value in other.state_dict().items():
                mine.state_dict()[key].copy_(value)


@pytest.mark.parametrize(("code_dim", "code_activation", "final"), [
    (20, "identity", None), (40, "identity", None), (20, "sigmoid", nn.Sigmoid()),
])  # fmt: skip
def test_batch_norm_nets_compute_ae_bakeoff_s_functions(code_dim, code_activation, final):
    """With the same weights, our encoder and decoder are ae_bakeoff's DenseEncoder/DenseDecoder
    (and the sparse model's sigmoid code), in training mode (batch statistics) and in eval mode."""
    torch.manual_seed(0)
    encoder, decoder = mlp_autoencoder(
        (1, 32, 32), 20, code_dim, hidden_dims=None, depth=3, batch_norm=True,
        code_activation=code_activation,
    )  # fmt: skip
    their_encoder = bakeoff_dense([1024, *bakeoff_units(1024, code_dim)[1:], code_dim], final)
    their_decoder = bakeoff_dense([20, *bakeoff_units(1024, 20)[::-1]])  # (sigmoid: the model's)
    copy_into(encoder.mlp, their_encoder)
    copy_into(decoder.mlp, their_decoder)
    assert sum(p.numel() for p in encoder.parameters()) == sum(
        p.numel() for p in their_encoder.parameters()
    )
    x = torch.rand(16, 1, 32, 32)
    for mode in (True, False):
        for module in (encoder, decoder, their_encoder, their_decoder):
            module.train(mode)
        codes = encoder(x)
        torch.testing.assert_close(codes, their_encoder(x.flatten(1)))
        torch.testing.assert_close(
            decoder(codes[:, :20]), their_decoder(codes[:, :20]).view(x.shape)
        )


def test_shallow_nets_are_one_layer_each_way_with_a_relu_code():
    encoder, decoder = mlp_autoencoder((1, 32, 32), 20, 20, hidden_dims=[], code_activation="relu")
    assert [tuple(layer.weight.shape) for layer in encoder.mlp.linears] == [(20, 1024)]
    assert [tuple(layer.weight.shape) for layer in decoder.mlp.linears] == [(1024, 20)]
    codes = encoder(torch.randn(64, 1, 32, 32))
    assert codes.min() == 0 and codes.max() > 0  # ReLU on the code: some units off
    assert not encoder.mlp.is_linear and not encoder.mlp.is_plain


def test_a_plain_mlp_is_unchanged_and_the_linear_checks_see_the_new_parts():
    plain = MLP(6, [5], 4)
    assert list(plain.state_dict()) == ["linears.0.weight", "linears.0.bias", "linears.1.weight",
                                        "linears.1.bias"]  # fmt: skip
    assert plain.is_plain and not plain.is_linear
    assert MLP(6, [5], 4, activation="identity", bias=False).is_linear
    normed = MLP(6, [5], 4, activation="identity", bias=False, batch_norm=True)
    squashed = MLP(6, [5], 4, activation="identity", bias=False, output_activation="sigmoid")
    for mlp in (normed, squashed):
        assert not mlp.is_linear and not mlp.is_plain
        with pytest.raises(ValueError, match="nor batch norm"):
            mlp.as_matrix()
    assert normed.linears[0].bias is None and normed.linears[1].bias is None  # (bias=False)
    with_bias = MLP(6, [5], 4, batch_norm=True)
    assert with_bias.linears[0].bias is None and with_bias.linears[1].bias is not None
    assert len(MLP(6, [], 4, batch_norm=True).norms) == 0  # no hidden layer, no norm


def test_the_widths_are_given_one_way():
    with pytest.raises(ValueError, match="not both"):
        mlp_autoencoder((1, 8, 8), 4, 4, hidden_dims=[16], depth=3)
    with pytest.raises(ValueError, match="not both"):
        mlp_autoencoder((1, 8, 8), 4, 4, hidden_dims=None)
    with pytest.raises(ValueError, match="depth must be >= 1"):
        mlp_autoencoder((1, 8, 8), 4, 4, hidden_dims=None, depth=0)


@pytest.mark.parametrize("options", [{"batch_norm": True}, {"code_activation": "sigmoid"}])
def test_the_contractive_penalty_is_exact_for_the_new_parts(options):
    """The closed form assumes Linear -> act chains: batch norm (its running statistics, as for a
    per-example Jacobian) and a code activation take the exact general path."""
    torch.manual_seed(0)
    encoder, _ = mlp_autoencoder((1, 4, 4), 3, 3, hidden_dims=[8], activation="tanh", **options)
    encoder.train()
    x = torch.rand(5, 1, 4, 4)
    for module in encoder.modules():  # running statistics away from (0, 1), so they matter
        if isinstance(module, nn.BatchNorm1d):
            module.running_mean.uniform_(-1, 1), module.running_var.uniform_(0.5, 2)
    value = jacobian_frobenius_sq(encoder, x)
    assert all(module.training for module in encoder.modules())  # its mode left as it was
    encoder.eval()
    rows = [
        torch.autograd.functional.jacobian(lambda e: encoder(e.unsqueeze(0))[0], example)
        for example in x
    ]
    expected = torch.stack([row.square().sum() for row in rows]).mean()
    torch.testing.assert_close(value, expected)
