"""Building a :class:`ClipAdapter`: an open_clip model/pretrained pair, a local checkpoint, or a
seeded random model from an explicit architecture dict."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.model import CLIP
from open_clip.tokenizer import SimpleTokenizer

from ..hub import CheckpointNotFoundError
from .adapter import ClipAdapter
from .tokenization import ClipTextProcessor


def _named_model(name: str, pretrained: str | None, checkpoint: Path | None, image_size: int | None, quick_gelu: bool | None) -> tuple[CLIP, dict]:
    """``open_clip.create_model_and_transforms(name, pretrained=checkpoint or pretrained)``.

    QuickGELU follows the pretrained tag's config (OpenAI weights need it) unless ``quick_gelu``
    is given, also when the weights come from a local ``checkpoint``."""
    pcfg = open_clip.get_pretrained_cfg(name, pretrained) if pretrained else {}
    source = str(checkpoint) if checkpoint is not None else pretrained
    try:
        model, _, _ = open_clip.create_model_and_transforms(
            name,
            pretrained=source,
            force_quick_gelu=bool(pcfg.get("quick_gelu", False) if quick_gelu is None else quick_gelu),
            force_image_size=image_size,
        )
    except (OSError, RuntimeError) as exc:
        raise CheckpointNotFoundError(
            f"open_clip could not load {name!r} with weights {source!r} ({type(exc).__name__}: {exc}); run once with network "
            "access to cache the pretrained weights, or pass --checkpoint PATH to a local open_clip checkpoint"
        ) from exc
    return model, pcfg


def _random_model(model_cfg: Mapping[str, Any], checkpoint: Path | None, image_size: int | None, seed: int) -> CLIP:
    """A CLIP from an explicit ``{embed_dim, vision_cfg, text_cfg}`` dict, seeded, optionally loaded."""
    cfg = {**model_cfg, "vision_cfg": dict(model_cfg["vision_cfg"])}
    if image_size is not None:
        cfg["vision_cfg"]["image_size"] = image_size
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
        torch.manual_seed(seed)
        model = CLIP(**cfg)
    if checkpoint is not None:
        open_clip.load_checkpoint(model, str(checkpoint))
    return model


def build_clip(
    config: Mapping[str, Any],
    *,
    checkpoint: str | Path | None,
    tokenizer: str | None = None,
    image_size: int | None = None,
    seed: int = 0,
) -> ClipAdapter:
    """Build a clip-family adapter in eval mode.

    ``config`` is either ``{"model": NAME, "pretrained": TAG}`` (any open_clip pair; a
    ``checkpoint`` path replaces the tag's weights, ``"quick_gelu"`` overrides the tag's
    activation) or ``{"model_cfg": {"embed_dim", "vision_cfg", "text_cfg"}}``: a
    :class:`open_clip.model.CLIP` with weights drawn after ``torch.manual_seed(seed)`` (no download)
    or loaded from ``checkpoint``. ``tokenizer`` names the open_clip model whose tokenizer to use
    (default: the model's own; open_clip ships the BPE vocabulary). ``image_size`` re-grids the
    visual position embedding.
    """
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if "model_cfg" in config:
        model, pcfg = _random_model(config["model_cfg"], ckpt, image_size, seed), {}
        tok = open_clip.get_tokenizer(tokenizer) if tokenizer else SimpleTokenizer(context_length=model.context_length)
        origin = {"architecture": dict(config["model_cfg"]), "random_init_seed": None if ckpt else seed}
    elif "model" in config:
        name = config["model"]
        model, pcfg = _named_model(name, config.get("pretrained"), ckpt, image_size, config.get("quick_gelu"))
        tok = open_clip.get_tokenizer(tokenizer or name)
        origin = {"open_clip_model": name, "pretrained": config.get("pretrained")}
    else:
        raise ValueError(f"a clip config needs 'model' (an open_clip name) or 'model_cfg' (an architecture dict), got keys {sorted(config)}")
    processor = ClipTextProcessor(tok, model.context_length)
    mean, std = pcfg.get("mean", OPENAI_DATASET_MEAN), pcfg.get("std", OPENAI_DATASET_STD)
    provenance = {**origin, "checkpoint": str(ckpt.resolve()) if ckpt else None}
    return ClipAdapter(model.eval(), processor, mean, std, provenance).eval()
