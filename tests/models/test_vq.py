"""The quantiser on its own: codes are codebook entries, the straight-through gradient, where the
codebook and commitment terms send their gradients, EMA updates, data initialisation and dead-code
restarts, per-unit (ae_bakeoff) quantisation, and the perplexity and usage of a codebook."""

import math

import pytest
import torch

from ae_lab.models.codebook_usage import CodebookUsage, perplexity, usage
from ae_lab.models.losses import codebook_loss, commitment_loss
from ae_lab.models.quantize import VectorQuantizer


def quantizer(latent=6, size=5, dim=2, **settings) -> VectorQuantizer:
    torch.manual_seed(0)
    settings.setdefault("codebook_init", "uniform")
    return VectorQuantizer(latent, codebook_size=size, codebook_dim=dim, **settings)


def set_codebook(vq: VectorQuantizer, values: torch.Tensor) -> None:
    with torch.no_grad():
        vq.codebook.copy_(values)
        if vq.ema is not None:
            vq.ema_sum.copy_(values)
            vq.ema_count.fill_(1.0)


def rows_in(rows: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """For each row of ``rows``, whether it equals a row of ``table`` exactly."""
    return (rows.unsqueeze(1) == table.unsqueeze(0)).all(-1).any(1)


def test_codes_are_the_nearest_codebook_entries():
    vq = quantizer(latent=8, size=7, dim=4).eval()
    set_codebook(vq, torch.randn(7, 4))
    h = torch.randn(10, 8)
    codes = vq.code(h)
    assert codes.shape == h.shape
    vectors = codes.reshape(-1, 4)
    assert rows_in(vectors, vq.codebook).all()
    nearest = torch.cdist(h.reshape(-1, 4), vq.codebook).argmin(1)
    torch.testing.assert_close(vectors, vq.codebook[nearest])
    out = vq(h)
    torch.testing.assert_close(out.codes, codes)
    torch.testing.assert_close(out.z, codes)  # forward: the codes themselves
    assert out.indices.shape == (10, 2) and torch.equal(out.indices.flatten(), nearest)


def test_the_gradient_goes_straight_through_to_the_encoder_output():
    vq = quantizer().eval()
    set_codebook(vq, torch.randn(5, 2))
    h = torch.randn(4, 6, requires_grad=True)
    weights = torch.randn(4, 6)
    (vq(h).z * weights).sum().backward()
    torch.testing.assert_close(h.grad, weights)  # the identity backward
    assert vq.codebook.grad is None  # the decoder's gradient does not reach the codebook
    h.grad = None
    (vq.sample(h) * weights).sum().backward()
    torch.testing.assert_close(h.grad, weights)


def test_the_codebook_term_moves_only_the_codebook_and_the_commitment_only_the_encoder():
    vq = quantizer().eval()
    set_codebook(vq, torch.randn(5, 2))
    h = torch.randn(4, 6, requires_grad=True)
    out = vq(h)
    out.terms["codebook"].backward(retain_graph=True)
    assert h.grad is None or not h.grad.any()
    # d/de sum_b ||sg(h_b) - e||^2 / B over the vectors assigned to each code
    flat, idx = h.detach().reshape(-1, 2), out.indices.flatten()
    expected = torch.zeros(5, 2).index_add_(0, idx, 2 * (vq.codebook.detach()[idx] - flat)) / 4
    torch.testing.assert_close(vq.codebook.grad, expected)
    vq.codebook.grad = None
    out.terms["commitment"].backward()
    assert vq.codebook.grad is None or not vq.codebook.grad.any()
    torch.testing.assert_close(h.grad, 2 * (h.detach() - out.codes.detach()) / 4)
    # the same value, the loss weighing the commitment by beta
    torch.testing.assert_close(out.terms["codebook"], out.terms["commitment"])
    torch.testing.assert_close(
        out.loss, out.terms["codebook"] + vq.commitment * out.terms["commitment"]
    )
    torch.testing.assert_close(
        codebook_loss(h, out.codes), (out.codes - h).square().sum(1).mean(), check_dtype=False
    )
    torch.testing.assert_close(commitment_loss(h, out.codes), out.terms["commitment"])


def test_ema_moves_each_code_towards_the_mean_of_its_vectors():
    vq = quantizer(latent=2, size=3, dim=2, ema=0.9).train()
    start = torch.tensor([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0]])
    set_codebook(vq, start)
    h = torch.tensor([[1.0, 0.0], [0.0, 1.0], [4.0, 4.0]])  # two vectors for code 0, one for 1
    out = vq(h)
    assert out.indices.flatten().tolist() == [0, 0, 1]
    assert "codebook" not in out.terms  # EMA, not the gradient, trains the codebook
    assert not vq.codebook.requires_grad
    # count 0.9 * 1 + 0.1 * n, sum 0.9 * e + 0.1 * sum(h): the new code is their ratio
    torch.testing.assert_close(vq.codebook[0], (0.1 * torch.tensor([1.0, 1.0])) / (0.9 + 0.2))
    torch.testing.assert_close(vq.codebook[1], (0.9 * start[1] + 0.1 * h[2]) / 1.0)
    torch.testing.assert_close(vq.codebook[2], start[2])  # unused: unchanged
    mean0 = h[:2].mean(0)
    assert (vq.codebook[0] - mean0).norm() < (start[0] - mean0).norm()
    for _ in range(100):
        vq(h)
    torch.testing.assert_close(vq.codebook[0], mean0, atol=1e-4, rtol=0)
    torch.testing.assert_close(vq.codebook[1], h[2], atol=1e-4, rtol=0)


def test_evaluation_changes_nothing():
    vq = quantizer(ema=0.9, dead_code_steps=1, codebook_init="data").eval()
    before = {k: v.clone() for k, v in vq.state_dict().items()}
    vq(torch.randn(8, 6))
    assert all(torch.equal(before[k], v) for k, v in vq.state_dict().items())


@pytest.mark.parametrize("ema", [None, 0.9])
def test_codes_start_at_the_first_batch_with_data_initialisation(ema):
    vq = quantizer(size=16, ema=ema, codebook_init="data").train()
    assert not vq.initialized
    h = torch.randn(4, 6) * 10  # far from U(-1/K, 1/K)
    vq(h)
    assert vq.initialized and rows_in(vq.codebook, h.reshape(-1, 2)).all()
    again = torch.randn(4, 6)
    before = vq.codebook.detach().clone()
    vq(again)  # only once
    if ema is None:
        torch.testing.assert_close(vq.codebook, before)


@pytest.mark.parametrize("ema", [None, 0.9])
def test_dead_codes_restart_at_encoder_outputs(ema):
    vq = quantizer(latent=2, size=4, dim=2, ema=ema, dead_code_steps=3).train()
    start = torch.tensor([[0.0, 0.0], [1.0, 1.0], [50.0, 50.0], [-50.0, 50.0]])
    set_codebook(vq, start)
    h = torch.tensor([[0.1, 0.0], [0.9, 1.0], [0.0, 0.2], [1.1, 0.9]])  # codes 0 and 1 only
    for step in range(1, 3):
        vq(h)
        assert vq.idle_steps.tolist() == [0, 0, step, step]
        torch.testing.assert_close(vq.codebook[2:], start[2:])  # not dead yet
    vq(h)  # the third step unused: restarted
    assert rows_in(vq.codebook[2:], h).all()
    assert vq.idle_steps.tolist() == [0, 0, 0, 0]
    if ema is not None:
        torch.testing.assert_close(vq.ema_sum[2:], vq.codebook[2:])
        assert vq.ema_count[2:].tolist() == [1.0, 1.0]


def test_a_restart_leaves_the_graph_usable():
    """Restarts change a learned codebook in place after the forward used it: backward works."""
    vq = quantizer(dead_code_steps=1).train()
    h = torch.randn(4, 6, requires_grad=True)
    out = vq(h)
    (out.loss + out.z.sum()).backward()
    assert h.grad is not None and vq.codebook.grad is not None


def test_per_unit_quantises_each_unit_to_its_own_scalar_levels():
    """ae_bakeoff's vq: every unit has its own K scalar levels (their embeddings are
    (1, latent, K)), and each unit is rounded to the nearest of its own."""
    vq = VectorQuantizer(5, codebook_size=8, per_unit=True, codebook_init="uniform").eval()
    assert tuple(vq.codebook.shape) == (5 * 8, 1) and vq.entries == 40
    levels = torch.linspace(-1, 1, 8) + torch.arange(5).unsqueeze(1) * 10  # unit u near 10u
    with torch.no_grad():
        vq.codebook.copy_(levels.reshape(-1, 1))
    h = torch.randn(3, 5) + torch.arange(5) * 10
    codes = vq.code(h)
    expected = torch.stack([levels[u][(h[:, u, None] - levels[u]).abs().argmin(-1)]
                            for u in range(5)], dim=1)  # fmt: skip
    torch.testing.assert_close(codes, expected)
    out = vq(h)
    assert out.indices.shape == (3, 5)
    assert ((out.indices // 8) == torch.arange(5)).all()  # unit u's index in its own block


def test_per_unit_restarts_take_each_unit_s_own_values():
    vq = VectorQuantizer(3, codebook_size=4, per_unit=True, codebook_init="data").train()
    h = torch.randn(16, 3) * 0.1 + torch.tensor([0.0, 100.0, -100.0])
    vq(h)
    levels = vq.codebook.view(3, 4)
    assert (levels[1] > 50).all() and (levels[2] < -50).all() and levels[0].abs().max() < 5


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"codebook_dim": 4}, "model.latent_dim=6 is not a multiple of model.codebook_dim=4"),
        ({"per_unit": True, "codebook_dim": 2}, "leave model.codebook_dim unset"),
        ({"ema": 1.0}, "model.ema must be a decay between 0 and 1"),
        ({"codebook_size": 1}, "model.codebook_size must be >= 2"),
        ({"dead_code_steps": 0}, "model.dead_code_steps must be >= 1"),
    ],
)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        VectorQuantizer(6, **settings)


def test_perplexity_is_the_number_of_codes_used_evenly():
    assert perplexity(torch.full((7,), 3.0)).item() == pytest.approx(7)
    assert perplexity(torch.tensor([0.0, 9.0, 0.0])).item() == pytest.approx(1)
    uneven = torch.tensor([1.0, 3.0])
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert perplexity(uneven).item() == pytest.approx(math.exp(entropy))
    assert usage(torch.tensor([0.0, 2.0, 1.0, 0.0])).item() == 0.5


def test_codebook_usage_counts_every_index_seen():
    metric = CodebookUsage(8)
    metric.update(torch.tensor([[0, 1], [2, 3]]))
    metric.update(torch.tensor([0, 1, 2, 3]))
    values = metric.compute()
    assert values["vq_perplexity"].item() == pytest.approx(4)
    assert values["codebook_usage"].item() == 0.5
    metric.reset()
    metric.update(torch.arange(8).repeat(3))
    assert metric.compute()["vq_perplexity"].item() == pytest.approx(8)


def test_a_loaded_codebook_is_not_initialised_again_and_draws_no_random_numbers():
    """A resumed run takes the same random numbers as the run that never stopped."""
    trained = quantizer(codebook_init="data").train()
    trained(torch.randn(4, 6))
    restored = quantizer(codebook_init="data")
    restored.load_state_dict(trained.state_dict())
    restored.train()
    h = torch.randn(4, 6) + 100
    before_codes, before_rng = restored.codebook.detach().clone(), torch.random.get_rng_state()
    restored(h)
    assert torch.equal(torch.random.get_rng_state(), before_rng)
    torch.testing.assert_close(restored.codebook, before_codes)
