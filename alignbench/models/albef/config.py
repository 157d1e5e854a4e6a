"""Configuration of ALBEF-layout models (ALBEF, TCL): a ViT image encoder and a BERT text encoder
whose layers from ``fusion_layer`` on cross-attend to the image tokens."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

# Named architectures for ``{"preset": NAME}`` configs; explicit keys override them.
PRESETS: dict[str, dict[str, Any]] = {
    "base": {},  # the field defaults: ALBEF / TCL pre-trained at 256 px
    "tiny": {
        "image_size": 64,
        "patch_size": 8,
        "vision_width": 32,
        "vision_depth": 2,
        "vision_heads": 2,
        "hidden_size": 32,
        "num_layers": 4,
        "num_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
        "fusion_layer": 2,
        "embed_dim": 16,
    },
}


@dataclass
class AlbefConfig:
    """Hyper-parameters; the defaults are the published ALBEF / TCL pre-training architecture.

    ViT-B/16 (timm layout, LayerNorm eps 1e-6) at ``image_size`` 256, BERT-base uncased with
    cross-attention in layers 6-11 (``fusion_layer=6``), contrastive projections to 256.
    """

    image_size: int = 256
    patch_size: int = 16
    vision_width: int = 768
    vision_depth: int = 12
    vision_heads: int = 12
    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    fusion_layer: int = 6
    embed_dim: int = 256
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch size {self.patch_size}")
        if not 0 <= self.fusion_layer < self.num_layers:
            raise ValueError(f"fusion_layer {self.fusion_layer} must lie in [0, num_layers={self.num_layers})")
        if self.vision_width != self.hidden_size:
            # transformers' BERT cross-attention projects keys/values from hidden_size features
            raise ValueError(f"vision_width {self.vision_width} must equal hidden_size {self.hidden_size} (the ALBEF layout)")

    @property
    def grid_size(self) -> int:
        """Patches per side at ``image_size``."""
        return self.image_size // self.patch_size

    @property
    def num_fusion_layers(self) -> int:
        """Layers with cross-attention."""
        return self.num_layers - self.fusion_layer

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> "AlbefConfig":
        """Keys of ``config`` > its ``"preset"`` (see :data:`PRESETS`) > the defaults; unknown keys are errors."""
        preset = config.get("preset")
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"unknown ALBEF preset {preset!r}; known: {', '.join(PRESETS)}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - names - {"preset"})
        if unknown:
            raise ValueError(f"unknown ALBEF config keys {unknown}; known: {sorted(names)}")
        return cls(**{**PRESETS.get(preset, {}), **{k: v for k, v in config.items() if k != "preset"}})

    def to_dict(self) -> dict:
        """Plain dict of all fields (for provenance records)."""
        return asdict(self)

    def to_diff_dict(self) -> dict:
        """The fields that differ from the defaults (what adapters record, as for transformers configs)."""
        return {k: v for k, v in asdict(self).items() if v != getattr(AlbefConfig, k)}
