"""Writing small test clips in a real container format (MPEG-4 Part 2 in .mp4) with PyAV."""

from __future__ import annotations

from pathlib import Path

import numpy as np

RED_STEP = 30  # frame k is a flat colour with red = RED_STEP * k


def write_clip(path: Path, n_frames: int, size: tuple[int, int] = (64, 48), seed: int | None = None) -> Path:
    """An ``n_frames`` clip: flat frames whose red channel encodes the frame index, or (with
    ``seed``) random frames, so different clips look different."""
    import av

    rng = np.random.default_rng(seed)
    w, h = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for k in range(n_frames):
            if seed is None:
                rgb = np.zeros((h, w, 3), np.uint8)
                rgb[..., 0], rgb[..., 1], rgb[..., 2] = RED_STEP * k, 100, 60
            else:
                rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
