"""BridgeTower image-text matching (transformers ``BridgeTowerForImageAndTextRetrieval``)."""

from .adapter import BridgeTowerAdapter, build

__all__ = ["BridgeTowerAdapter", "build"]
