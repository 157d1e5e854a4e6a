"""ALBEF-layout models (ALBEF, TCL): config, network, checkpoints, adapter, builder."""

from .adapter import ALBEF_GRADCAM, GRADCAM_BERT_LAYER, AlbefAdapter
from .build import build_albef
from .checkpoint import LoadReport, load_into, normalise_keys
from .config import AlbefConfig
from .modeling import AlbefModel, FusionOutput

build = build_albef  # the family builder alignbench.models.factory calls

__all__ = [
    "ALBEF_GRADCAM",
    "GRADCAM_BERT_LAYER",
    "AlbefAdapter",
    "AlbefConfig",
    "AlbefModel",
    "FusionOutput",
    "LoadReport",
    "build",
    "build_albef",
    "load_into",
    "normalise_keys",
]
