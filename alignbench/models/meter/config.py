"""Configuration of the METER / SCL / GLSCL architecture ("METER layout").

Field names follow the reference ``_config`` keys; the keys describing the two pretrained
towers (``vision_*``, ``decoder_*``, ``text_*``) are the extra keys of the parity fixture's
``config.json``, named after the reference ``CLIP`` constructor and ``RobertaConfig``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

# Named architectures for ``{"preset": NAME}`` configs; explicit keys override them.
PRESETS: dict[str, dict[str, Any]] = {
    "base": {},  # the field defaults: the published base model
    # The parity fixture's architecture; its vocabulary is the fixture's 600-token BPE.
    "tiny": {
        "hidden_size": 64,
        "num_heads": 4,
        "num_layers": 2,
        "num_top_layer": 2,
        "max_text_len": 40,
        "vocab_size": 600,
        "text_num_layers": 2,
        "text_num_heads": 4,
        "text_intermediate_size": 256,
        "text_max_position_embeddings": 42,
        "image_size": 128,
        "vision_width": 64,
        "vision_layers": 3,
        "decoder_embed_dim": 32,
        "decoder_depth": 1,
        "decoder_num_heads": 2,
    },
}


@dataclass
class MeterConfig:
    """Hyper-parameters of a METER-layout model; defaults are the published base model.

    GLSCL / SCL / METER CLIP16-288-RoBERTa: RoBERTa-base text tower, CLIP ViT-B/16 visual tower
    (``vision_layers=12`` builds 11 resblocks, as the published layout does), 6 co-attention
    layer pairs of width 768 with 12 heads, MAE decoder 512/8/16.
    """

    # co-attention stack
    hidden_size: int = 768
    num_heads: int = 12
    num_layers: int = 12  # reference key; unused by the architecture
    num_top_layer: int = 6
    mlp_ratio: int = 4
    # text
    max_text_len: int = 50  # the SCL/GLSCL reference default (scl/config.py)
    vocab_size: int = 50265
    text_num_layers: int = 12
    text_num_heads: int = 12
    text_intermediate_size: int = 3072
    text_hidden_act: str = "gelu"
    text_max_position_embeddings: int = 514
    text_type_vocab_size: int = 1
    text_layer_norm_eps: float = 1e-5
    text_pad_token_id: int = 1
    text_bos_token_id: int = 0
    text_eos_token_id: int = 2
    # vision
    image_size: int = 288
    patch_size: int = 16
    vision_width: int = 768
    vision_layers: int = 12  # the CLIP Transformer builds vision_layers - 1 resblocks
    # flexible video mode: frames of the learnable temporal embedding; 0 builds none (an image
    # model, whose clips get a zero temporal embedding); the reference video tower has 8. Not the
    # reference key ``num_frames``, which is the frames a video dataset samples per clip.
    temporal_frames: int = 0
    # MAE decoder (parameters only; the published build passes no decoder args)
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    decoder_mlp_ratio: float = 4.0
    # projections
    input_text_embed_size: int | None = None  # text tower width; None: hidden_size
    input_image_embed_size: int | None = None  # None: vision_width
    contrastive_dim: int = 512

    def __post_init__(self) -> None:
        if self.input_text_embed_size is None:
            self.input_text_embed_size = self.hidden_size
        if self.input_image_embed_size is None:
            self.input_image_embed_size = self.vision_width
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch size {self.patch_size}")
        if self.temporal_frames < 0:
            raise ValueError(f"temporal_frames must be >= 0, got {self.temporal_frames}")
        if self.vision_width % 64:
            raise ValueError(f"vision_width {self.vision_width} must be a multiple of 64 (CLIP heads = width // 64)")

    @property
    def vision_heads(self) -> int:
        """CLIP visual heads: ``vision_width // 64``."""
        return self.vision_width // 64

    @property
    def vision_resblocks(self) -> int:
        """Residual blocks actually built: ``vision_layers - 1`` (published layout)."""
        return self.vision_layers - 1

    @property
    def grid_size(self) -> int:
        """Patches per side at ``image_size``."""
        return self.image_size // self.patch_size

    @classmethod
    def base(cls) -> MeterConfig:
        """The published CLIP16-288-RoBERTa base configuration (the field defaults)."""
        return cls()

    @classmethod
    def from_reference(cls, config: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> MeterConfig:
        """Build from a reference-style ``_config`` dict; unknown and ``_``-prefixed keys are ignored.

        Precedence: keys of ``config`` > its ``"preset"`` (see :data:`PRESETS`) > ``defaults``
        (e.g. a checkpoint's hparams config) > the dataclass defaults.
        """
        preset = config.get("preset")
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"unknown METER preset {preset!r}; known: {', '.join(PRESETS)}")
        names = {f.name for f in fields(cls)}
        merged = {k: v for k, v in (defaults or {}).items() if k in names}
        merged.update(PRESETS.get(preset, {}))
        merged.update({k: v for k, v in config.items() if k in names})
        return cls(**merged)

    @staticmethod
    def from_checkpoint_hparams(ckpt: Mapping[str, Any]) -> dict | None:
        """The reference config stored by Lightning in a checkpoint, if any.

        Reads ``hyper_parameters["config"]`` (or ``hparams["config"]``); ``None`` when absent.
        """
        for key in ("hyper_parameters", "hparams"):
            hp = ckpt.get(key)
            config = hp.get("config") if isinstance(hp, Mapping) else None
            if isinstance(config, Mapping):
                return dict(config)
        return None

    def to_dict(self) -> dict:
        """Plain dict of all fields (for provenance records)."""
        return asdict(self)
