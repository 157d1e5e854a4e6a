"""Video tasks: grounding on clips, scored frame by frame, and video-text retrieval.

Grounding (task type ``video-grounding``, probes as in :mod:`.grounding`): the model reads each
clip ``[T, 3, H, W]`` with its caption once and returns maps ``[L, T, gh, gw]``; frame ``t``'s
maps are scored against frame ``t``'s boxes and masks exactly as an image's (same metrics,
same protocol); a model that encodes phrases on their own maps each phrase over the clip's
frames the same way. A clip's score is the mean over its frames; the benchmark figure is the mean
over clips. Per-clip records keep every frame's record under ``frames``; counts other than
``samples`` are over frames.

Retrieval (task type ``video-retrieval``): :class:`~.retrieval.RetrievalTask` with clips for
images (``i2t_*`` is video->text, ``t2i_*`` text->video); a clip's embedding is the model's
(METER: the frames' mean [CLS] in the video mode; dual encoders: mean frame embedding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..data import video_sources  # noqa: F401  (registers the video data sources)
from ..data.video import ClipDataset
from ..models.base import AlignmentModel, MapMethod, TextBatch
from .base import RunOptions
from .grounding import METRIC_KEYS, GroundingBatch, GroundingCollate, GroundingDataset, GroundingItem, GroundingTask, mean_or_none
from .retrieval import RetrievalTask


@dataclass
class VideoGroundingItem:
    """One clip: its frames as grounding items (produced in DataLoader workers)."""

    sample_id: str
    frames: list[GroundingItem]


class VideoGroundingDataset(GroundingDataset):
    """Clips of a video grounding source (items with ``frame_samples()``), every frame transformed
    and with its own grid masks."""

    def __getitem__(self, k: int) -> VideoGroundingItem:
        clip = self.source[self.indices[k]]
        return VideoGroundingItem(clip.sample_id, [self.item(frame) for frame in clip.frame_samples()])


@dataclass
class VideoGroundingBatch:
    """Collated clips: ``frames`` holds the ``B * T`` frames clip by clip (masks, phrases);
    ``pixel_values`` ``[B, T, 3, H, W]`` and ``text`` (one row per clip) are what the model reads."""

    sample_ids: list[str]
    frames: GroundingBatch
    pixel_values: torch.Tensor
    text: TextBatch

    @classmethod
    def of(cls, sample_ids: list[str], frames: GroundingBatch) -> "VideoGroundingBatch":
        n_frames = len(frames.sample_ids) // len(sample_ids)
        return cls(sample_ids, frames, frames.pixel_values.unflatten(0, (len(sample_ids), n_frames)),
                   frames.text.rows(slice(None, None, n_frames)))

    def to(self, device: torch.device | str) -> "VideoGroundingBatch":
        return VideoGroundingBatch.of(self.sample_ids, self.frames.to(device))

    def pin_memory(self) -> "VideoGroundingBatch":
        return VideoGroundingBatch.of(self.sample_ids, self.frames.pin_memory())


class VideoGroundingCollate(GroundingCollate):
    """Collates clips (all with the same number of frames) through the image collate."""

    def __call__(self, clips: list[VideoGroundingItem]) -> VideoGroundingBatch:  # type: ignore[override]
        if len({len(c.frames) for c in clips}) > 1:
            raise ValueError(f"clips of one batch must have equal frame counts, got {[len(c.frames) for c in clips]}")
        return VideoGroundingBatch.of([c.sample_id for c in clips], super().__call__([f for c in clips for f in c.frames]))


class VideoGroundingTask(GroundingTask):
    """Grounding on clips: per-frame scores of the ``global-local`` or ``local-local`` probe,
    averaged per clip (see the module docstring)."""

    dataset_class = VideoGroundingDataset
    collate_class = VideoGroundingCollate

    def describe_protocol(self) -> dict[str, Any]:
        return {**super().describe_protocol(), "frames": "scored per frame, mean per clip"}

    @staticmethod
    def scored_images(batch: VideoGroundingBatch) -> GroundingBatch:  # type: ignore[override]
        return batch.frames

    def token_maps(self, model: AlignmentModel, batch: VideoGroundingBatch, opts: RunOptions) -> torch.Tensor:  # type: ignore[override]
        """``[B * T, L, gh, gw]``, clip by clip."""
        return super().token_maps(model, batch, opts).transpose(1, 2).flatten(0, 1)

    def encoded_phrase_maps(self, model: AlignmentModel, batch: VideoGroundingBatch, phrases: list[str], method: MapMethod) -> torch.Tensor:  # type: ignore[override]
        """Frame phrase ``p``'s map: its clip's map ``[T, gh, gw]`` of the phrase, at its frame."""
        T = batch.pixel_values.shape[1]
        frame = batch.frames.phrase_sample
        maps = model.phrase_image_maps(batch.pixel_values, frame // T, phrases, method)
        return maps[torch.arange(len(phrases), device=maps.device), (frame % T).to(maps.device)]

    def score_batch(self, model: AlignmentModel, batch: VideoGroundingBatch, opts: RunOptions) -> list[dict]:
        per_frame = super().score_batch(model, batch, opts)
        T = batch.pixel_values.shape[1]
        return [self._clip_record(sid, per_frame[b * T : (b + 1) * T]) for b, sid in enumerate(batch.sample_ids)]

    @staticmethod
    def _clip_record(sample_id: str, frames: list[dict]) -> dict:
        return {
            "sample_id": sample_id,
            **{k: mean_or_none([f[k] for f in frames]) for k in METRIC_KEYS},
            "frames": [{"frame": t, **f} for t, f in enumerate(frames)],
        }

    def aggregate(self, records: list[dict]) -> tuple[dict[str, float | None], dict[str, Any]]:
        _, frame_counts = super().aggregate([f for r in records for f in r["frames"]])
        metrics = {k: mean_or_none([r[k] for r in records]) for k in METRIC_KEYS}
        counts = {"samples": len(records), "frames": frame_counts.pop("samples")}
        counts.update({k.replace("samples_", "frames_"): v for k, v in frame_counts.items()})
        return metrics, counts


class VideoRetrievalTask(RetrievalTask):
    """Video->text and text->video retrieval (R@1/5/10, RSUM) on clips."""

    def gallery_dataset(self, model: AlignmentModel, src: Any, indices: list[int]) -> ClipDataset:
        return ClipDataset(src, indices, model.image_transform())


__all__ = ["VideoGroundingTask", "VideoRetrievalTask"]
