"""Loading ALBEF-layout checkpoints (ALBEF ``.pth`` files, TCL) with clear errors.

Files are read by the METER family's :func:`~alignbench.models.meter.checkpoint.load_checkpoint`
(``{"model": state_dict}`` as the ALBEF scripts save it, a bare state dict, or safetensors).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from timm.layers import resample_abs_pos_embed

from ..meter.checkpoint import CheckpointError, _head
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


@dataclass
class LoadReport:
    """Model keys the checkpoint lacked (left at their initial values) and checkpoint keys dropped."""

    missing: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def unavailable_capabilities(self) -> set[str]:
        """Capabilities whose head weights the checkpoint lacked."""
        return {cap for prefix, cap in HEAD_CAPABILITIES.items() if any(k.startswith(prefix) for k in self.missing)}


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
    position_ids = state.get(POSITION_IDS_KEY)
    if position_ids is not None and not torch.equal(position_ids.flatten(), torch.arange(position_ids.numel(), dtype=position_ids.dtype)):
        raise CheckpointError(f"{source}: {POSITION_IDS_KEY} is not arange(n); refusing to drop it")
    ignored = sorted(k for k in state if k not in expected and (k == POSITION_IDS_KEY or k.startswith(UNUSED_PREFIXES)))
    unexpected = sorted(k for k in state if k not in expected and k not in ignored)
    missing = [k for k in expected if k not in state]
    required = [k for k in missing if not k.startswith(tuple(HEAD_CAPABILITIES))]
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}" for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = [
        f"{len(keys)} {what} ({_head(keys)})"
        for what, keys in (("missing keys", required), ("unexpected keys", unexpected), ("shape mismatches", mismatched))
        if keys
    ]
    if problems:
        hint = " It looks like a checkpoint of another architecture." if len(missing) == len(expected) else ""
        raise CheckpointError(f"{source} does not fit the ALBEF layout: {'; '.join(problems)}.{hint}")
    model.load_state_dict({k: v for k, v in state.items() if k not in ignored}, strict=False)
    return LoadReport(missing=missing, ignored=ignored)
