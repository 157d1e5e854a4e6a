"""The separable resize matrices equal the interpolation the protocols name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from alignbench.scoring.resize import area_matrix, resize_stack


@pytest.mark.parametrize("hw,g", [((120, 160), 8), ((150, 200), 8), ((96, 128), 18), ((500, 333), 18), ((5, 7), 8)])
def test_bicubic_equals_torch_interpolate_without_antialias(hw, g):
    rng = np.random.default_rng(0)
    masks = (rng.random((3, *hw)) > 0.6).astype(np.float32) * rng.integers(1, 4, (3, *hw))
    want = F.interpolate(torch.from_numpy(masks)[:, None], (g, g), mode="bicubic", align_corners=False)[:, 0].numpy()
    np.testing.assert_allclose(resize_stack(masks, (g, g), "bicubic-noaa"), want, atol=2e-6)


def test_bicubic_differs_from_antialiased_resize():
    masks = np.zeros((1, 120, 160), np.float32)
    masks[0, 50:62, 70:82] = 1  # a 12 px object between sample points
    aa = F.interpolate(torch.from_numpy(masks)[:, None], (8, 8), mode="bicubic", antialias=True)[:, 0].numpy()
    assert np.abs(resize_stack(masks, (8, 8), "bicubic-noaa") - aa).max() > 0.05


def test_area_matrix_rows_average_exact_intervals():
    m = area_matrix(10, 4)  # 2.5 source pixels per cell
    np.testing.assert_allclose(m.sum(1), 1.0)
    np.testing.assert_allclose(m[0], [0.4, 0.4, 0.2, 0, 0, 0, 0, 0, 0, 0])
    masks = np.random.default_rng(1).random((2, 16, 24)).astype(np.float32)
    want = F.adaptive_avg_pool2d(torch.from_numpy(masks), (8, 8)).numpy()
    np.testing.assert_allclose(resize_stack(masks, (8, 8), "area"), want, atol=1e-6)
