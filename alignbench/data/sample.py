"""The in-memory schema every grounding dataset is read into.

ALIGN-BENCH, Flickr30k Entities, RefCOCO* and the synthetic suite all become
:class:`GroundingSample` objects: one image, one caption, and the caption's annotated
phrases, each with one or more regions (a box and, where the dataset has one, a pixel mask).
Video grounding data (the synthetic video suite) becomes :class:`VideoGroundingSample`
objects: sampled frames, one caption, and per frame the phrases' regions in that frame.
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


@dataclass
class VideoGroundingSample:
    """One clip's sampled frames with its caption; ``frame_phrases[t]`` holds the caption's
    phrases with their regions in frame ``t`` (a phrase's regions move with its objects)."""

    sample_id: str
    frames: tuple[Image.Image, ...]
    caption: str
    frame_phrases: tuple[tuple[Phrase, ...], ...]
    meta: dict = field(default_factory=dict)

    def frame_samples(self) -> list[GroundingSample]:
        """Every frame as a :class:`GroundingSample` with id ``<sample_id>/frame-<t>``."""
        return [
            GroundingSample(f"{self.sample_id}/frame-{t}", frame, self.caption, phrases)
            for t, (frame, phrases) in enumerate(zip(self.frames, self.frame_phrases, strict=True))
        ]
