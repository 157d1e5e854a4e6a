"""Building an :class:`AlbefAdapter` from a config, a checkpoint and a tokenizer."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import read_checkpoint
from ..hf_common import load_tokenizer
from .adapter import AlbefAdapter
from .checkpoint import load_into
from .config import AlbefConfig
from .modeling import AlbefModel


def build_albef(
    config: Mapping[str, Any],
    *,
    checkpoint: str | Path | None,
    tokenizer: str | Path,
    image_size: int | None = None,
    seed: int = 0,
) -> AlbefAdapter:
    """Build an ALBEF-layout adapter in eval mode.

    ``config``: :class:`AlbefConfig` keys and/or ``{"preset": "base" | "tiny"}``; ``image_size``
    overrides it (a checkpoint's ViT position embedding is resampled to the new grid). The model is
    constructed after ``torch.manual_seed(seed)`` in a forked RNG, so a build without ``checkpoint``
    is a deterministic random model. ``tokenizer``: a BERT WordPiece folder or hub id (fast).
    """
    cfg = AlbefConfig.from_dict(config)
    if image_size is not None:
        cfg = dataclasses.replace(cfg, image_size=image_size)
    tok = load_tokenizer(tokenizer)
    if len(tok) > cfg.vocab_size or tok.pad_token_id != cfg.pad_token_id:
        raise ValueError(
            f"tokenizer {str(tokenizer)!r} (size {len(tok)}, pad id {tok.pad_token_id}) does not fit the ALBEF model "
            f"(vocab_size {cfg.vocab_size}, pad id {cfg.pad_token_id})"
        )
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
        torch.manual_seed(seed)
        model = AlbefModel(cfg)
    provenance: dict[str, Any] = {"tokenizer": str(tokenizer), "checkpoint": None}
    load_info: dict[str, Any] = {"random_init_seed": seed}
    unavailable: set[str] = set()
    if checkpoint is not None:
        state_dict, _ = read_checkpoint(checkpoint)
        report = load_into(model, state_dict, source=str(checkpoint))
        unavailable = report.unavailable_capabilities
        provenance["checkpoint"] = str(Path(checkpoint).resolve())
        load_info = {"missing_keys": report.missing, "ignored_keys": len(report.ignored)}
    return AlbefAdapter(model.eval(), tok, provenance, unavailable=unavailable, load_info=load_info).eval()
