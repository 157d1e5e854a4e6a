"""Image preprocessing shared by model families.

The reference pipeline of ALIGN-BENCH squashes an image to ``(S, S)`` with PIL bicubic (the
aspect ratio is not kept), converts it with torchvision ``ToTensor`` semantics and normalises it
with the CLIP mean/std. :class:`ImageTransform` reproduces that bit for bit on every supported
Pillow version.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


def resize_squash_bicubic(img: Image.Image, size: int) -> Image.Image:
    """Resize ``img`` to ``(size, size)`` with PIL bicubic, exactly as Pillow < 13 does.

    Pillow resamples a two-axis resize as two separable passes rounded to 8 bits in between.
    Up to 12.x the horizontal pass always runs first; Pillow 13 runs the vertical pass first
    when the height shrinks much more than the width (portrait images), which changes pixels
    by up to 6/255. Two single-axis ``resize`` calls, horizontal then vertical, fix the order,
    so the result equals the original (Pillow 9.1) pipeline on every Pillow version.
    Non-RGB images are converted to RGB first.
    """
    if img.mode != "RGB":
        img = img.convert("RGB")
    horizontal = img.resize((size, img.height), Image.Resampling.BICUBIC)
    return horizontal.resize((size, size), Image.Resampling.BICUBIC)


class ImageTransform:
    """PIL image -> normalised ``[3, S, S]`` float tensor (picklable for DataLoader workers).

    Squash resize (:func:`resize_squash_bicubic`), then torchvision ``ToTensor`` (uint8 / 255)
    and ``Normalize`` (``(x - mean) / std``).
    """

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.size = int(size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        resized = resize_squash_bicubic(img, self.size)
        pixels = torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1)
        x = pixels.to(torch.float32).div(255)
        mean = torch.tensor(self.mean, dtype=torch.float32)[:, None, None]
        std = torch.tensor(self.std, dtype=torch.float32)[:, None, None]
        return x.sub(mean).div(std)

    def __repr__(self) -> str:
        return f"ImageTransform(size={self.size}, mean={self.mean}, std={self.std})"
