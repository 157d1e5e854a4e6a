"""COCO run-length encoding of boolean masks (via ``pycocotools.mask``); round trips are exact."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as coco_mask


def encode_mask(mask: np.ndarray) -> dict:
    """Encode a 2-D boolean mask as ``{"size": [h, w], "counts": str}`` (compressed COCO RLE)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    rle = coco_mask.encode(np.asfortranarray(mask.astype(bool), dtype=np.uint8))
    return {"size": [int(n) for n in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_mask(rle: dict) -> np.ndarray:
    """Decode ``{"size": [h, w], "counts": str | bytes}`` into a C-ordered boolean ``(h, w)`` array."""
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    decoded = coco_mask.decode({"size": [int(n) for n in rle["size"]], "counts": counts})
    return np.ascontiguousarray(decoded, dtype=bool)
