"""Training data: synthetic-world scenes of the *train* split, preprocessed once into memory."""

from __future__ import annotations

import torch

from ..data.synthetic import SyntheticGroundingSource
from ..models.base import AlignmentModel


class SyntheticTrainSet:
    """Images (model-preprocessed tensors) and captions of ``align-bench-synth`` train scenes.

    The train split's seeds are disjoint from the evaluation (test) split's.
    """

    def __init__(self, model: AlignmentModel, size: str = "full", seed: int = 0) -> None:
        source = SyntheticGroundingSource(size=size, seed=seed, split="train")
        transform = model.image_transform()
        samples = [source[i] for i in range(len(source))]
        self.pixel_values = torch.stack([transform(s.image) for s in samples])
        self.captions = [s.caption for s in samples]
        self.fingerprint = source.fingerprint

    def __len__(self) -> int:
        return len(self.captions)
