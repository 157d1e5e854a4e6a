"""open_clip dual encoders ("clip" family): BPE tokenization with offsets, patch-similarity and
relevancy maps, cosine matching, embeddings."""

from .adapter import ClipAdapter
from .build import build_clip
from .tokenization import ClipTextProcessor

build = build_clip  # the family builder alignbench.models.factory calls

__all__ = ["ClipAdapter", "ClipTextProcessor", "build", "build_clip"]
