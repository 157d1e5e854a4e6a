"""ViLT image-text retrieval (transformers ``ViltForImageAndTextRetrieval``)."""

from .adapter import ViltAdapter, build

__all__ = ["ViltAdapter", "build"]
