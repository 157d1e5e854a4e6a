"""Loading ALBEF-layout checkpoints (ALBEF ``.pth`` files, TCL) with clear errors.

Files are read and checked by :mod:`alignbench.models.checkpoint` (``{"model": state_dict}`` as
the ALBEF scripts save it, a bare state dict, or safetensors), as for the METER family.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from timm.layers import resample_abs_pos_embed

from ..checkpoint import CheckpointError, KeyPolicy, LoadReport, load_checked
from .modeling import AlbefModel

POS_EMBED_KEY = "visual_encoder.pos_embed"
POSITION_IDS_KEY = "text_encoder.embeddings.position_ids"
# Pre-training state never used for inference: momentum encoders, queues, temperature, MLM head.
UNUSED_PREFIXES = (
    "visual_encoder_m.",
    "text_encoder_m.",
    "vision_proj_m.",
    "text_proj_m.",
    "image_queue",
    "text_queue",
    "idx_queue",
    "queue_ptr",
    "temp",
    "text_encoder.cls.",
    "text_encoder.pooler.",
)
# Heads a checkpoint may lack (e.g. one fine-tuned for another task); the capability is then unavailable.
HEAD_CAPABILITIES = {"itm_head.": "match", "vision_proj.": "embed", "text_proj.": "embed"}
POLICY = KeyPolicy("ALBEF", POSITION_IDS_KEY, UNUSED_PREFIXES, head_capabilities=HEAD_CAPABILITIES)

__all__ = ["CheckpointError", "LoadReport", "load_into", "normalise_keys"]


def normalise_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ALBEF pre-training saves the text encoder as ``BertForMaskedLM`` (``text_encoder.bert.*``),
    fine-tuned models as ``BertModel`` (``text_encoder.*``); map both to the latter."""
    prefix = "text_encoder.bert."
    return {("text_encoder." + k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def load_into(model: AlbefModel, state_dict: Mapping[str, torch.Tensor], source: str = "<state dict>") -> LoadReport:
    """Load an ALBEF-layout ``state_dict`` into ``model`` after checking that it fits.

    The ViT position embedding is resampled (bicubic) to the model's grid; keys in
    :data:`UNUSED_PREFIXES` and an ``arange`` text ``position_ids`` buffer are dropped; the heads
    of :data:`HEAD_CAPABILITIES` may be missing. Anything else that does not fit raises
    :class:`CheckpointError` naming ``source`` and the first offending keys.
    """
    state = normalise_keys(state_dict)
    expected = model.state_dict()
    pos = state.get(POS_EMBED_KEY)
    if pos is not None and pos.shape != expected[POS_EMBED_KEY].shape and pos.shape[-1] == expected[POS_EMBED_KEY].shape[-1]:
        state[POS_EMBED_KEY] = resample_abs_pos_embed(pos, new_size=[model.config.grid_size] * 2, num_prefix_tokens=1)
    return load_checked(model, state, POLICY, source)
