"""FLAVA (transformers ``FlavaForPreTraining``: the FLAVA model plus its ITM head)."""

from .adapter import FlavaAdapter, build

__all__ = ["FlavaAdapter", "build"]
