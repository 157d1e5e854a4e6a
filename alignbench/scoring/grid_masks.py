"""Ground truth on the patch grid: each sample's region masks, prepared once per protocol.

Grid masks depend only on the data, the grid size and the protocol, never on the model, so
they are computed here (on the CPU, in DataLoader workers) and the model side only multiplies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.sample import GroundingSample, Region
from ..protocol import Protocol
from .resize import resize_stack

MASKS_VERSION = 1
"""Bump whenever :func:`prepare_grid_masks` changes its output; invalidates cached masks."""

MASK_PARAMETERS = ("box_coords", "background_threshold", "pixel_mask_combine", "mask_resize")
"""The :class:`~alignbench.protocol.Protocol` fields that grid masks depend on."""


@dataclass
class GridMasks:
    """One sample's masks on a ``gh x gw`` grid.

    ``phrase_*`` are ``[P, gh, gw]`` (one row per annotated phrase, in annotation order),
    ``global_*`` are ``[gh, gw]``. ``*_hit`` are booleans telling whether a cell's centre lies
    in the region (for the pointing game). Pixel entries are ``None`` when the dataset has no
    pixel masks.
    """

    phrase_box: np.ndarray
    phrase_box_hit: np.ndarray
    phrase_pixel: np.ndarray | None
    phrase_pixel_hit: np.ndarray | None
    global_box: np.ndarray
    global_box_hit: np.ndarray
    global_pixel: np.ndarray | None
    global_pixel_hit: np.ndarray | None
    global_regions_used: int
    skipped_background: list[tuple[int, int]]


def _box_mask(region: Region, hw: tuple[int, int], coords: str) -> np.ndarray:
    """Float ``[H, W]`` mask of one box: the reference's int-truncated slice, or exact
    fractional pixel coverage of the float box."""
    h, w = hw
    x1, y1, x2, y2 = region.box
    if coords == "truncate":
        m = np.zeros(hw, np.float32)
        m[int(y1) : int(y2), int(x1) : int(x2)] = 1.0
        return m
    cov_x = np.clip(np.minimum(np.arange(w) + 1, x2) - np.maximum(np.arange(w), x1), 0, 1)
    cov_y = np.clip(np.minimum(np.arange(h) + 1, y2) - np.maximum(np.arange(h), y1), 0, 1)
    return np.outer(cov_y, cov_x).astype(np.float32)


def is_background(region: Region, hw: tuple[int, int], protocol: Protocol) -> bool:
    """Whether the global probe skips this region (box area strictly above the threshold)."""
    if protocol.background_threshold is None:
        return False
    x1, y1, x2, y2 = region.box
    if protocol.box_coords == "truncate":
        x1, y1, x2, y2 = int(x1), int(y1), int(x2), int(y2)
    return (y2 - y1) * (x2 - x1) > protocol.background_threshold * hw[0] * hw[1]


def _combine(regions: list[Region], hw: tuple[int, int], protocol: Protocol) -> tuple[np.ndarray, np.ndarray | None]:
    """Full-resolution box mask (union) and pixel mask (count or union) of some regions."""
    box = np.zeros(hw, np.float32)
    for r in regions:
        np.maximum(box, _box_mask(r, hw, protocol.box_coords), out=box)
    if any(r.mask is None for r in regions):
        return box, None
    pixel = np.zeros(hw, np.float32)
    for r in regions:
        pixel += r.mask
    if protocol.pixel_mask_combine == "union":
        np.minimum(pixel, 1.0, out=pixel)
    return box, pixel


def _cell_centres(hw: tuple[int, int], grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    ys = np.floor((np.arange(grid[0]) + 0.5) * hw[0] / grid[0]).astype(int)
    xs = np.floor((np.arange(grid[1]) + 0.5) * hw[1] / grid[1]).astype(int)
    return ys, xs


def prepare_grid_masks(sample: GroundingSample, grid: tuple[int, int], protocol: Protocol) -> GridMasks:
    """Resize a sample's phrase and global masks to ``grid`` under ``protocol``."""
    w, h = sample.size_wh
    hw = (h, w)
    per_phrase = [_combine(list(p.regions), hw, protocol) for p in sample.phrases]
    kept: list[Region] = []
    skipped: list[tuple[int, int]] = []
    for pi, phrase in enumerate(sample.phrases):
        for ri, region in enumerate(phrase.regions):
            if is_background(region, hw, protocol):
                skipped.append((pi, ri))
            else:
                kept.append(region)
    g_box, g_pixel = _combine(kept, hw, protocol)
    has_pixel = g_pixel is not None and all(px is not None for _, px in per_phrase)

    # One stack, one resize: P phrase box masks + global box [+ the same for pixel masks].
    stack = [b for b, _ in per_phrase] + [g_box]
    if has_pixel:
        stack += [px for _, px in per_phrase] + [g_pixel]
    full = np.stack(stack)
    ys, xs = _cell_centres(hw, grid)
    resized = resize_stack(full, grid, protocol.mask_resize)
    hits = full[:, ys][:, :, xs] > 0
    n = len(per_phrase) + 1
    box, box_hit = resized[:n], hits[:n]
    pixel = pixel_hit = None
    if has_pixel:
        pixel, pixel_hit = resized[n:], hits[n:]
    return GridMasks(
        phrase_box=box[:-1],
        phrase_box_hit=box_hit[:-1],
        phrase_pixel=None if pixel is None else pixel[:-1],
        phrase_pixel_hit=None if pixel_hit is None else pixel_hit[:-1],
        global_box=box[-1],
        global_box_hit=box_hit[-1],
        global_pixel=None if pixel is None else pixel[-1],
        global_pixel_hit=None if pixel_hit is None else pixel_hit[-1],
        global_regions_used=len(kept),
        skipped_background=skipped,
    )
