"""Reading METER-layout checkpoints and loading them with clear errors."""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import MeterConfig
from .modeling import MeterModel, adapt_position_encoding

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
# Heads a checkpoint may lack; the capability they serve is then unavailable.
HEAD_CAPABILITIES = {"itm_score.": "match", "vision_proj.": "embed", "language_proj.": "embed"}
_SHOWN = 5


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable or does not fit the model."""


@dataclass
class LoadReport:
    """What :func:`load_into` did: model keys left at their initial values, checkpoint keys dropped."""

    missing: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def unavailable_capabilities(self) -> set[str]:
        """Capabilities whose head weights the checkpoint lacked."""
        return {cap for prefix, cap in HEAD_CAPABILITIES.items() if any(k.startswith(prefix) for k in self.missing)}


def _read(path: Path) -> Any:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        # Memory-map zip-format files: Lightning checkpoints carry GBs of optimizer state.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as exc:  # unpickling and format errors come in many types
        raise CheckpointError(
            f"cannot read checkpoint {path} (read with torch.load(weights_only=True), which refuses arbitrary "
            f"pickled objects; a state dict saved as .safetensors or a plain .pt always loads): {exc}"
        ) from exc


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    """Read a checkpoint file -> ``(state_dict, reference config or None)``.

    Accepts a Lightning ``{"state_dict": ...}``, a ``{"model": ...}`` dict or a bare state dict,
    in ``.ckpt``/``.pt``/``.pth`` (``torch.load(weights_only=True)``) or ``.safetensors``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    obj = _read(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict")
    hparams = MeterConfig.from_checkpoint_hparams(obj)
    for key in ("state_dict", "model"):
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    state_dict = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state_dict:
        raise CheckpointError(f"{path} contains no tensors")
    return state_dict, hparams


def _head(keys: list[str]) -> str:
    more = f", ... ({len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def load_into(model: MeterModel, state_dict: Mapping[str, torch.Tensor], source: str = "<state dict>") -> LoadReport:
    """Load ``state_dict`` into ``model`` after checking that it fits; returns a :class:`LoadReport`.

    The visual position embedding is re-gridded to the model's image size first. Unused keys
    (:data:`UNUSED_PREFIXES`) and the RoBERTa ``position_ids`` buffer (checked to be
    ``arange``) are dropped when the model lacks them; pre-training-only parameters and the ITM/contrastive heads
    may be missing. Anything else that does not fit raises :class:`CheckpointError` naming
    ``source`` and the first offending keys.
    """
    cfg = model.config
    state = adapt_position_encoding(dict(state_dict), after=cfg.image_size, patch_size=cfg.patch_size)
    expected = model.state_dict()

    position_ids = state.get(TEXT_POSITION_IDS_KEY)
    if position_ids is not None and TEXT_POSITION_IDS_KEY not in expected:
        if not torch.equal(position_ids.flatten(), torch.arange(position_ids.numel(), dtype=position_ids.dtype)):
            raise CheckpointError(f"{source}: {TEXT_POSITION_IDS_KEY} is not arange(n); refusing to drop it")
    extra = sorted(k for k in state if k not in expected)
    ignored = [k for k in extra if k == TEXT_POSITION_IDS_KEY or k.startswith(UNUSED_PREFIXES)]
    unexpected = [k for k in extra if k not in ignored]
    optional = TRAINING_ONLY_PREFIXES + tuple(HEAD_CAPABILITIES)
    missing = [k for k in expected if k not in state]
    required = [k for k in missing if not k.startswith(optional)]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if required or unexpected or mismatched:
        problems = []
        if required:
            problems.append(f"{len(required)} missing keys ({_head(required)})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected keys ({_head(unexpected)})")
        if mismatched:
            problems.append(f"{len(mismatched)} shape mismatches ({_head(mismatched)})")
        hint = " It looks like a checkpoint of another architecture." if len(missing) == len(expected) else ""
        raise CheckpointError(f"{source} does not fit the METER layout: {'; '.join(problems)}.{hint}")

    for k in ignored:
        del state[k]
    model.load_state_dict(state, strict=False)
    return LoadReport(missing=missing, ignored=ignored)
