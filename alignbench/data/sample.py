"""The in-memory schema every grounding dataset is read into.

ALIGN-BENCH, Flickr30k Entities, RefCOCO* and the synthetic suite all become
:class:`GroundingSample` objects: one image, one caption, and the caption's annotated
phrases, each with one or more regions (a box and, where the dataset has one, a pixel mask).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Region:
    """One annotated region in original image pixels.

    ``box`` is ``(x1, y1, x2, y2)`` with exclusive ends, as floats exactly as annotated;
    ``mask`` is a boolean ``(H, W)`` array or ``None`` for box-only datasets.
    """

    box: tuple[float, float, float, float]
    mask: np.ndarray | None = None


@dataclass(frozen=True)
class Phrase:
    """A phrase of the caption (lower-case words as they occur in it) and its regions."""

    text: str
    regions: tuple[Region, ...]


@dataclass
class GroundingSample:
    """One image with its caption and annotated phrases."""

    sample_id: str
    image: Image.Image
    caption: str
    phrases: tuple[Phrase, ...]
    meta: dict = field(default_factory=dict)

    @property
    def size_wh(self) -> tuple[int, int]:
        """Original image size as ``(width, height)``."""
        return self.image.size
