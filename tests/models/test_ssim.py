"""The lab's SSIM is torchmetrics' SSIM (the same numbers), computed with matrix products."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.functional.image import structural_similarity_index_measure as reference

from ae_lab.models.ssim import SSIM, filter_matrix, gaussian_window, ssim_per_image


@pytest.mark.parametrize("shape", [(64, 1, 32, 32), (8, 3, 64, 64), (5, 1, 28, 28), (4, 3, 7, 9)])
def test_equals_torchmetrics_per_image(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    preds = torch.rand(shape)
    target = (preds + 0.2 * torch.randn(shape)).clamp(0, 1)
    expected = reference(preds, target, data_range=1.0, reduction="none")
    torch.testing.assert_close(ssim_per_image(preds, target), expected, atol=1e-5, rtol=0)


def test_metric_averages_images_over_batches() -> None:
    torch.manual_seed(1)
    preds, target = torch.rand(2, 10, 1, 16, 16)
    metric = SSIM(data_range=1.0)
    metric.update(preds[:3], target[:3])
    metric.update(preds[3:], target[3:])
    torch.testing.assert_close(metric.compute(), reference(preds, target, data_range=1.0))


def test_identical_images_score_one_and_unrelated_near_zero() -> None:
    torch.manual_seed(2)
    x = torch.rand(6, 1, 32, 32)
    torch.testing.assert_close(ssim_per_image(x, x), torch.ones(6))
    assert ssim_per_image(x, torch.rand(6, 1, 32, 32)).abs().max() < 0.1


def test_filter_rows_sum_to_one_and_reflect_at_the_edge() -> None:
    window = gaussian_window()
    assert window.numel() == 11
    matrix = filter_matrix(12, window)
    torch.testing.assert_close(matrix.sum(dim=1), torch.ones(12))
    # pixel 0's window reaches pixels -5..5: reflected, -k is pixel k, so pixel 1 gets both taps
    torch.testing.assert_close(matrix[0, 1], window[4] + window[6])
    torch.testing.assert_close(matrix[0, 0], window[5])


def test_images_smaller_than_the_window_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 6 pixels"):
        ssim_per_image(torch.rand(2, 1, 5, 5), torch.rand(2, 1, 5, 5))
