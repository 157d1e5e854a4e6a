"""Reading video clips: decode with PyAV, sample ``T`` frames, preprocess them as images.

Frame sampling rule (deterministic, the original GLSCL/SCL video setting): of a clip's ``n``
decodable frames, frames ``int(k * (n - 1) / (T - 1))`` for ``k = 0..T-1`` are used
(``numpy.linspace(0, n - 1, T)`` truncated to int: the first and the last frame always, the
others evenly spaced between them; ``T = 1`` takes the first frame). A clip with fewer than
``T`` decodable frames is an error, as is a file PyAV cannot read.

PyAV is the optional extra ``alignbench[video]``; it is imported only when a clip is decoded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .errors import DataError

DEFAULT_FRAMES = 4
"""Frames sampled per clip unless a task says otherwise (the original video setting)."""

INSTALL_HINT = "pip install 'alignbench[video]'"


def require_av() -> Any:
    """The ``av`` module, or an ImportError saying how to install it."""
    try:
        import av
    except ImportError as exc:
        raise ImportError(f"reading video clips needs PyAV, which is not installed: {INSTALL_HINT}") from exc
    return av


def sample_frame_indices(n_frames: int, frames: int) -> list[int]:
    """The ``frames`` indices (of ``n_frames``) the sampling rule picks (see the module docstring)."""
    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}")
    if n_frames < frames:
        raise ValueError(f"cannot sample {frames} distinct frames of {n_frames}")
    return np.linspace(0, n_frames - 1, num=frames).astype(int).tolist()


def _decode(av: Any, path: Path, indices: set[int]) -> tuple[dict[int, Image.Image], int]:
    """The frames at ``indices`` as RGB images, and how many frames the stream decodes to."""
    kept: dict[int, Image.Image] = {}
    n = 0
    with av.open(str(path)) as container:
        for n, frame in enumerate(container.decode(video=0), start=1):
            if n - 1 in indices:
                kept[n - 1] = frame.to_image()
    return kept, n


def read_clip(path: str | Path, frames: int, sample_id: str) -> list[Image.Image]:
    """``frames`` RGB frames of the video file at ``path``, sampled by the module's rule.

    Raises :class:`DataError` naming ``sample_id`` and ``path`` when the file cannot be read
    or holds fewer than ``frames`` decodable frames, and ImportError without PyAV.
    """
    av, path = require_av(), Path(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError("the file has no video stream", sample_id, path)
            n = sum(1 for packet in container.demux(video=0) if packet.size)
        while True:  # a stream may decode to fewer frames than it has packets: then sample again
            if n < frames:
                raise DataError(f"the clip has {n} decodable frames, fewer than the {frames} sampled per clip", sample_id, path)
            indices = sample_frame_indices(n, frames)
            kept, decoded = _decode(av, path, set(indices))
            if decoded >= n:
                return [kept[i] for i in indices]
            n = decoded
    except av.error.FFmpegError as exc:
        raise DataError(f"cannot decode the video: {exc}", sample_id, path) from exc


@dataclass(frozen=True)
class ClipRetrievalItem:
    """One retrieval clip: its sampled frames, its captions and their indices in the source's
    ``captions``."""

    clip_id: str
    frames: tuple[Image.Image, ...]
    captions: tuple[str, ...]
    caption_ids: tuple[int, ...]


def clip_tensor(frames: Sequence[Image.Image], transform: Callable[[Image.Image], torch.Tensor]) -> torch.Tensor:
    """A clip's frames through an image transform, stacked: ``[T, 3, S, S]``."""
    return torch.stack([transform(frame) for frame in frames])


class ClipDataset(torch.utils.data.Dataset):
    """Preprocessed clips ``[T, 3, S, S]`` of a video source (items with ``.frames``) at
    ``indices``; decoding and the transform run in the DataLoader workers."""

    def __init__(self, source: Any, indices: list[int], transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.source, self.indices, self.transform = source, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> torch.Tensor:
        return clip_tensor(self.source[self.indices[k]].frames, self.transform)
