"""Video decoding: the frame sampling rule, clips read from real .mp4 files, named per-sample errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from video_helpers import RED_STEP, write_clip

from alignbench.data.errors import DataError
from alignbench.data.video import ClipDataset, read_clip, require_av, sample_frame_indices
from alignbench.models.image import CLIP_MEAN, CLIP_STD, ImageTransform

pytest.importorskip("av")


@pytest.mark.parametrize("n,frames,expected", [(8, 4, [0, 2, 4, 7]), (9, 4, [0, 2, 5, 8]), (4, 4, [0, 1, 2, 3]), (5, 1, [0])])
def test_sampling_rule_takes_first_last_and_evenly_spaced_frames(n, frames, expected):
    assert sample_frame_indices(n, frames) == expected


def test_sampling_rule_rejects_too_few_frames():
    with pytest.raises(ValueError, match="cannot sample 4 distinct frames of 3"):
        sample_frame_indices(3, 4)


def test_read_clip_decodes_the_sampled_frames(tmp_path):
    path = write_clip(tmp_path / "nine.mp4", 9)
    frames = read_clip(path, 4, "clip-9")
    assert len(frames) == 4 and all(f.size == (64, 48) and f.mode == "RGB" for f in frames)
    reds = [float(np.asarray(f)[..., 0].mean()) for f in frames]
    np.testing.assert_allclose(reds, [RED_STEP * k for k in (0, 2, 5, 8)], atol=8)  # lossy codec


def test_clip_dataset_returns_a_tensor_per_clip(tmp_path):
    class Source:
        def __getitem__(self, i):
            return type("Item", (), {"frames": read_clip(write_clip(tmp_path / f"{i}.mp4", 5), 3, str(i))})()

    x = ClipDataset(Source(), [0], ImageTransform(32, CLIP_MEAN, CLIP_STD))[0]
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32


def test_too_short_clip_is_a_named_error(tmp_path):
    path = write_clip(tmp_path / "short.mp4", 3)
    with pytest.raises(DataError, match=r"sample 'clip-short' \(.*short\.mp4\): the clip has 3 decodable frames, fewer than the 4"):
        read_clip(path, 4, "clip-short")


@pytest.mark.parametrize("damage", ["truncated", "not a video"])
def test_unreadable_file_is_a_named_error(tmp_path, damage):
    good = write_clip(tmp_path / "good.mp4", 6).read_bytes()
    path = tmp_path / "bad.mp4"
    path.write_bytes(good[:300] if damage == "truncated" else b"hello, this is text" * 20)
    with pytest.raises(DataError, match=r"sample 'clip-bad' \(.*bad\.mp4\): cannot decode the video"):
        read_clip(path, 4, "clip-bad")


def test_missing_pyav_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'alignbench\[video\]'"):
        require_av()
    with pytest.raises(ImportError, match="alignbench\\[video\\]"):
        read_clip(tmp_path / "any.mp4", 4, "x")
