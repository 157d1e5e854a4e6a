"""METER / SCL / GLSCL models ("METER layout"): config, network, checkpoints, adapter, builder."""

from .adapter import MeterAdapter
from .build import build_meter, load_tokenizer

build = build_meter  # the family builder alignbench.models.factory calls
from .checkpoint import CheckpointError, LoadReport, load_checkpoint, load_into
from .config import MeterConfig
from .modeling import MeterModel, MeterOutput, adapt_position_encoding

__all__ = [
    "CheckpointError",
    "LoadReport",
    "MeterAdapter",
    "MeterConfig",
    "MeterModel",
    "MeterOutput",
    "adapt_position_encoding",
    "build_meter",
    "load_checkpoint",
    "load_into",
    "load_tokenizer",
]
