"""Separable mask resizing as two small matrices: ``out = Rh @ mask @ Rw.T``.

Resizing an ``H x W`` mask to the ``gh x gw`` patch grid is separable for both resize methods
the protocols use, so one pair of matrices per (image size, grid) replaces a per-mask
interpolation call and works on a whole stack of masks at once.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

_CUBIC_A = -0.75  # PyTorch's (and OpenCV's) cubic-convolution coefficient


def _cubic_weights(t: float) -> np.ndarray:
    """Weights of the 4 taps at offsets -1, 0, 1, 2 for fractional position ``t``."""
    a = _CUBIC_A

    def near(x: float) -> float:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: float) -> float:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.array([far(t + 1), near(t), near(1 - t), far(2 - t)])


@lru_cache(maxsize=256)
def bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` matrix of ``F.interpolate(mode='bicubic', align_corners=False)``
    without antialiasing: point sampling at ``(i + 0.5) * n_in / n_out - 0.5`` with the
    a = -0.75 kernel and clamped borders (the original torchvision 0.12 tensor resize)."""
    scale = n_in / n_out
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        src = (i + 0.5) * scale - 0.5
        x0 = int(np.floor(src))
        for k, w in zip(range(x0 - 1, x0 + 3), _cubic_weights(src - x0)):
            m[i, min(max(k, 0), n_in - 1)] += w
    m.setflags(write=False)
    return m


@lru_cache(maxsize=256)
def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` matrix averaging each output cell's exact source interval
    ``[i * n_in / n_out, (i + 1) * n_in / n_out)``, with fractional pixel weights."""
    edges = np.arange(n_out + 1) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    px = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, px + 1) - np.maximum(lo, px), 0, None)
    m = overlap / (hi - lo)
    m.setflags(write=False)
    return m


RESIZE_MATRICES = {"bicubic-noaa": bicubic_matrix, "area": area_matrix}


def resize_stack(masks: np.ndarray, grid: tuple[int, int], method: str) -> np.ndarray:
    """Resize ``[N, H, W]`` masks to ``[N, gh, gw]`` float32 with the named method."""
    build = RESIZE_MATRICES[method]
    rh = build(masks.shape[-2], grid[0])
    rw = build(masks.shape[-1], grid[1])
    out = (rh @ masks.astype(np.float64, copy=False)) @ rw.T  # two batched matmuls: [N, gh, W] then [N, gh, gw]
    return out.astype(np.float32)
