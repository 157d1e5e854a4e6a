"""Reading METER-layout checkpoints and loading them with clear errors (the file reading and the
fit check are shared with the ALBEF family in :mod:`alignbench.models.checkpoint`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, KeyPolicy, LoadReport, load_checked, read_checkpoint
from .config import MeterConfig
from .modeling import TEMPORAL_EMBED_KEY, MeterModel, adapt_position_encoding

TEXT_POSITION_IDS_KEY = "text_transformer.embeddings.position_ids"
# Keys this model never uses, dropped when it lacks them: other fine-tuning heads, and the CLIP
# text-tower leftovers (token_embedding, positional_embedding, ln_final) of METER checkpoints.
UNUSED_PREFIXES = (
    "vqa_classifier.",
    "nlvr2_classifier.",
    "snli_classifier.",
    "rank_output.",
    "vision_transformer.token_embedding.",
    "vision_transformer.positional_embedding",
    "vision_transformer.ln_final.",
)
# Pre-training-only parameters that are never run here: a checkpoint may lack them.
TRAINING_ONLY_PREFIXES = (
    "vision_transformer.mask_token",
    "vision_transformer.decoder_",
    "vision_transformer.visual.visual_mask_token",
    "mlm_score.",
    "cl_temp",
)
# The video mode's temporal embedding: image checkpoints lack it, and it then stays at zero.
ZERO_INIT_KEYS = (TEMPORAL_EMBED_KEY,)
# Heads a checkpoint may lack; the capability they serve is then unavailable.
HEAD_CAPABILITIES = {"itm_score.": "match", "vision_proj.": "embed", "language_proj.": "embed"}
POLICY = KeyPolicy("METER", TEXT_POSITION_IDS_KEY, UNUSED_PREFIXES, TRAINING_ONLY_PREFIXES + ZERO_INIT_KEYS, HEAD_CAPABILITIES)

__all__ = ["CheckpointError", "LoadReport", "load_checkpoint", "load_into"]


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    """Read a checkpoint file -> ``(state_dict, reference config or None)``.

    Accepts a Lightning ``{"state_dict": ...}`` (whose ``hyper_parameters`` give the reference
    config), a ``{"model": ...}`` dict or a bare state dict, in ``.ckpt``/``.pt``/``.pth``
    (``torch.load(weights_only=True)``) or ``.safetensors``.
    """
    state_dict, top = read_checkpoint(path)
    return state_dict, MeterConfig.from_checkpoint_hparams(top)


def load_into(model: MeterModel, state_dict: Mapping[str, torch.Tensor], source: str = "<state dict>") -> LoadReport:
    """Load ``state_dict`` into ``model`` after checking that it fits; returns a :class:`LoadReport`.

    The visual position embedding is re-gridded to the model's image size first. Unused keys
    (:data:`UNUSED_PREFIXES`) and the RoBERTa ``position_ids`` buffer (checked to be
    ``arange``) are dropped when the model lacks them; pre-training-only parameters, the ITM/contrastive heads
    and the temporal embedding (left at zero) may be missing. Anything else that does not fit raises :class:`CheckpointError` naming
    ``source`` and the first offending keys.
    """
    cfg = model.config
    state = adapt_position_encoding(dict(state_dict), after=cfg.image_size, patch_size=cfg.patch_size)
    return load_checked(model, state, POLICY, source)
