"""BLIP image-text matching (transformers ``BlipForImageTextRetrieval``)."""

from .adapter import BlipAdapter, build

__all__ = ["BlipAdapter", "build"]
