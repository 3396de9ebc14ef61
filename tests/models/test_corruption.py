import pytest
import torch
import torch.nn.functional as F

from ae_lab.models.corruption import GaussianNoise, MaskingNoise, SaltAndPepper


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_masking_drops_about_p_and_leaves_the_rest_unchanged(p):
    torch.manual_seed(0)
    x = torch.rand(64, 1, 28, 28) * 0.9 + 0.1  # no pixel is 0 before corruption
    noisy = MaskingNoise(p)(x)
    dropped = noisy == 0
    assert dropped.float().mean().item() == pytest.approx(p, abs=0.01)
    assert torch.equal(noisy[~dropped], x[~dropped]), "kept pixels must not change"


def test_dropout_is_not_masking_noise():
    """F.dropout rescales the kept pixels: exactly what masking noise must not do."""
    x = torch.full((1000,), 0.5)
    assert F.dropout(x, 0.5, training=True).max() == 1.0
    assert MaskingNoise(0.5)(x).max() == 0.5


def test_salt_and_pepper_sets_about_p_pixels_to_0_or_1():
    torch.manual_seed(0)
    x = torch.full((100_000,), 0.5)
    noisy = SaltAndPepper(0.2)(x)
    hit = noisy != 0.5
    assert hit.float().mean().item() == pytest.approx(0.2, abs=0.01)
    assert set(noisy[hit].unique().tolist()) == {0.0, 1.0}
    assert (noisy[hit] == 1).float().mean().item() == pytest.approx(0.5, abs=0.03)


def test_gaussian_noise_is_clipped_and_has_the_set_std():
    torch.manual_seed(0)
    x = torch.full((100_000,), 0.5)
    noisy = GaussianNoise(std=0.1)(x)
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert (noisy - x).std().item() == pytest.approx(0.1, rel=0.05)


def test_probabilities_outside_0_1_are_refused():
    with pytest.raises(ValueError):
        MaskingNoise(1.5)
