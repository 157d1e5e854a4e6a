"""Dataset sources of the synthetic suite: grounding, hard negatives and retrieval, on images
and on clips (the scenes set in motion, :mod:`.clips`).

Every source is lazy: an item is generated when it is asked for. Splits use disjoint scene
seeds: ``scene_seed = 2 * seed`` for ``test`` and ``2 * seed + 1`` for ``train``, so no scene
of one split is a scene of the other, whatever the seeds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from PIL import Image

from alignbench.data.sample import GroundingSample, VideoGroundingSample
from alignbench.data.synthetic.captions import render_caption
from alignbench.data.synthetic.clips import CLIP_FRAMES, CLIP_GENERATOR_NAME, CLIP_GENERATOR_VERSION, clip_id, render_clip
from alignbench.data.synthetic.scene import (
    GENERATOR_NAME,
    GENERATOR_VERSION,
    generate_scene,
    render_scene,
    scene_id,
    scene_identities,
)
from alignbench.data.video import DEFAULT_FRAMES, ClipRetrievalItem, sample_frame_indices
from alignbench.data.synthetic.variants import (
    HardNegative,
    group_signature,
    hard_negative_pairs,
    retrieval_specs,
)

SIZES = {"mini": 200, "full": 2000}
VIDEO_SIZES = {"mini": 50, "full": 500}
SPLITS = ("test", "train")


def split_seed(seed: int, split: str) -> int:
    """The scene seed of ``split``: even for ``test``, odd for ``train``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    return 2 * seed + (split == "train")


class _SyntheticSource:
    """Size, seed, split, fingerprint and description shared by all synthetic sources."""

    kind: ClassVar[str]
    sizes: ClassVar[dict[str, int]] = SIZES

    def __init__(self, size: str = "mini", seed: int = 0, split: str = "test") -> None:
        if size not in self.sizes:
            raise ValueError(f"unknown size {size!r}; choose one of {', '.join(self.sizes)}")
        self.size, self.seed, self.split = size, seed, split
        self.scene_seed = split_seed(seed, split)
        self.num_scenes = self.sizes[size]

    def _scene_index(self, i: int) -> int:
        if not -self.num_scenes <= i < self.num_scenes:
            raise IndexError(f"index {i} out of range for {self.num_scenes} scenes")
        return i % self.num_scenes

    @property
    def fingerprint(self) -> str:
        """sha256 of the generator version and the source parameters."""
        params = {"generator": GENERATOR_NAME, "version": GENERATOR_VERSION, "kind": self.kind,
                  "size": self.size, "seed": self.seed, "split": self.split, **self._extra_params()}
        return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()

    def _extra_params(self) -> dict[str, Any]:
        """Parameters of subclasses that change the data (in the fingerprint and description)."""
        return {}

    def describe(self) -> dict[str, Any]:
        return {"name": GENERATOR_NAME, "kind": self.kind, "generator_version": GENERATOR_VERSION,
                "size": self.size, "seed": self.seed, "split": self.split,
                "scene_seed": self.scene_seed, "num_scenes": self.num_scenes, **self._extra_params(),
                "fingerprint": self.fingerprint}


class SyntheticGroundingSource(_SyntheticSource):
    """``align-bench-synth``: :class:`GroundingSample` scenes with exact pixel masks."""

    kind = "grounding"

    def __len__(self) -> int:
        return self.num_scenes

    def __getitem__(self, i: int) -> GroundingSample:
        return generate_scene(self.scene_seed, self._scene_index(i))

    @property
    def sample_ids(self) -> list[str]:
        return [scene_id(self.scene_seed, i) for i in range(self.num_scenes)]


class SyntheticHardNegativeSource(_SyntheticSource):
    """One :class:`HardNegative` per (scene, kind) with a valid negative; others are skipped.

    Which items exist is only known after rendering every scene, so ``len`` and indexing
    render the whole set once and keep only ``(scene index, kind)`` pairs.
    """

    kind = "hard-negative"

    def __init__(self, size: str = "mini", seed: int = 0, split: str = "test") -> None:
        super().__init__(size, seed, split)
        self._index: list[tuple[int, str]] | None = None

    def _items(self) -> list[tuple[int, str]]:
        if self._index is None:
            self._index = [(i, item.kind) for i in range(self.num_scenes)
                           for item in hard_negative_pairs(generate_scene(self.scene_seed, i))]
        return self._index

    def __len__(self) -> int:
        return len(self._items())

    def __getitem__(self, i: int) -> HardNegative:
        scene, kind = self._items()[i]
        return next(item for item in hard_negative_pairs(generate_scene(self.scene_seed, scene))
                    if item.kind == kind)

    def __iter__(self) -> Iterator[HardNegative]:
        for i in range(self.num_scenes):
            yield from hard_negative_pairs(generate_scene(self.scene_seed, i))


@dataclass(frozen=True)
class RetrievalItem:
    """One retrieval image, its captions, and their indices in the source's ``captions``."""

    image_id: str
    image: Image.Image
    captions: tuple[str, ...]
    caption_ids: tuple[int, ...]


def retrieval_attempts(scene_seed: int, num_scenes: int) -> list[int]:
    """For each slot, the first redraw whose caption matches no other image of the set.

    A retrieval caption lists every ``(colour, shape, count)`` group of its image, so it is
    true for another image exactly when that image's groups contain its groups; a slot is
    redrawn until its groups neither contain nor are contained in those of earlier slots and
    the image has at least two groups.
    """
    accepted: list[frozenset] = []
    attempts = []
    for i in range(num_scenes):
        attempt = 0
        while True:
            groups = group_signature(scene_identities(scene_seed, i, attempt))
            if len(groups) >= 2 and not any(groups <= g or g <= groups for g in accepted):
                break
            attempt += 1
        accepted.append(groups)
        attempts.append(attempt)
    return attempts


class SyntheticRetrievalSource(_SyntheticSource):
    """Images with two paraphrased captions each; every caption matches exactly one image.

    ``captions[t]`` describes image ``text_to_image[t]``; the captions are computed from the
    scenes' objects without rendering, images are rendered on access.
    """

    kind = "retrieval"
    captions_per_image = 2

    def __init__(self, size: str = "mini", seed: int = 0, split: str = "test") -> None:
        super().__init__(size, seed, split)
        self._attempts = retrieval_attempts(self.scene_seed, self.num_scenes)
        self.captions = [render_caption(spec) for i, a in enumerate(self._attempts)
                         for spec in retrieval_specs(scene_identities(self.scene_seed, i, a))]
        self.text_to_image = [i for i in range(self.num_scenes) for _ in range(self.captions_per_image)]

    def __len__(self) -> int:
        return self.num_scenes

    def __getitem__(self, i: int) -> RetrievalItem:
        scene = self.scene(i)
        first = self._scene_index(i) * self.captions_per_image
        ids = tuple(range(first, first + self.captions_per_image))
        return RetrievalItem(scene.sample_id, scene.image, tuple(self.captions[t] for t in ids), ids)

    def scene(self, i: int) -> GroundingSample:
        """The full scene (with metadata) behind image ``i``."""
        i = self._scene_index(i)
        return render_scene(self.scene_seed, i, self._attempts[i])

    @property
    def image_ids(self) -> list[str]:
        return [scene_id(self.scene_seed, i, a) for i, a in enumerate(self._attempts)]


class _Clips:
    """Frames per clip of the video sources (mixed in before :class:`_SyntheticSource`)."""

    sizes: ClassVar[dict[str, int]] = VIDEO_SIZES
    frames: int
    frame_indices: list[int]

    def _set_frames(self, frames: int) -> None:
        if not 1 <= frames <= CLIP_FRAMES:
            raise ValueError(f"frames must be between 1 and {CLIP_FRAMES} (the frames of a synthetic clip), got {frames}")
        self.frames, self.frame_indices = frames, sample_frame_indices(CLIP_FRAMES, frames)

    def _extra_params(self) -> dict[str, Any]:
        return {"clip_generator": CLIP_GENERATOR_NAME, "clip_generator_version": CLIP_GENERATOR_VERSION,
                "frames": self.frames}


class SyntheticVideoGroundingSource(_Clips, _SyntheticSource):
    """``align-bench-synth-video``: :class:`VideoGroundingSample` clips of ``frames`` frames
    (sampled from the clip's :data:`~.clips.CLIP_FRAMES` by the rule of :mod:`alignbench.data.video`)."""

    kind = "video-grounding"

    def __init__(self, size: str = "mini", seed: int = 0, split: str = "test", frames: int = DEFAULT_FRAMES) -> None:
        super().__init__(size, seed, split)
        self._set_frames(frames)

    def __len__(self) -> int:
        return self.num_scenes

    def __getitem__(self, i: int) -> VideoGroundingSample:
        return render_clip(self.scene_seed, self._scene_index(i), frames=self.frame_indices)

    @property
    def sample_ids(self) -> list[str]:
        return [clip_id(self.scene_seed, i) for i in range(self.num_scenes)]


class SyntheticVideoRetrievalSource(_Clips, SyntheticRetrievalSource):
    """The retrieval set's scenes as clips: two captions per clip, each true of exactly one clip
    (motion changes no caption: they list the clip's objects)."""

    kind = "video-retrieval"

    def __init__(self, size: str = "mini", seed: int = 0, split: str = "test", frames: int = DEFAULT_FRAMES) -> None:
        super().__init__(size, seed, split)
        self._set_frames(frames)

    def __getitem__(self, i: int) -> ClipRetrievalItem:
        i = self._scene_index(i)
        clip = render_clip(self.scene_seed, i, self._attempts[i], self.frame_indices)
        ids = tuple(range(i * self.captions_per_image, (i + 1) * self.captions_per_image))
        return ClipRetrievalItem(clip.sample_id, clip.frames, tuple(self.captions[t] for t in ids), ids)

    @property
    def image_ids(self) -> list[str]:
        """The clip ids (the retrieval task calls gallery items images)."""
        return [clip_id(self.scene_seed, i, a) for i, a in enumerate(self._attempts)]
