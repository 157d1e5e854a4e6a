"""Image preprocessing: Pillow-version-independent squash resize and the CLIP transform."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alignbench.models.image import (
    CLIP_MEAN,
    CLIP_STD,
    ImageTransform,
    resize_squash_bicubic,
)

FIXTURE = Path(__file__).resolve().parents[2] / "shared/fixtures/align_bench_parity"


def _noise(height: int, width: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(height * 1000 + width)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert(mode)


def test_landscape_two_pass_equals_single_resize() -> None:
    # Width shrinks more than height: every Pillow version resizes horizontally first.
    img = _noise(200, 600)
    expected = np.asarray(img.resize((128, 128), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(np.asarray(resize_squash_bicubic(img, 128)), expected)


def test_non_rgb_is_converted() -> None:
    out = resize_squash_bicubic(_noise(90, 70, mode="L"), 32)
    assert out.mode == "RGB" and out.size == (32, 32)


def test_transform_is_picklable() -> None:
    t = pickle.loads(pickle.dumps(ImageTransform(64, CLIP_MEAN, CLIP_STD)))
    x = t(_noise(50, 80))
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32


@pytest.mark.skipif(not FIXTURE.is_dir(), reason=f"parity fixture not found at {FIXTURE}")
@pytest.mark.parametrize("i", range(10))
def test_fixture_pixel_values(i: int) -> None:
    transform = ImageTransform(128, CLIP_MEAN, CLIP_STD)
    with Image.open(FIXTURE / f"data/images/{i}.jpg") as img:
        x = transform(img)
    expected = np.load(FIXTURE / f"expected/features_{i}.npz")["pixel_values"]
    np.testing.assert_allclose(x.numpy(), expected, rtol=0, atol=1e-6)
