"""Building a :class:`MeterAdapter` from a config, a checkpoint and a tokenizer."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerFast

from ..hf_common import load_tokenizer
from ..hub import sha256_file
from .adapter import MeterAdapter
from .checkpoint import load_checkpoint, load_into
from .config import MeterConfig
from .modeling import TEMPORAL_EMBED_KEY, MeterModel


def _check_tokenizer(tokenizer: PreTrainedTokenizerFast, cfg: MeterConfig, source: str | Path) -> None:
    if len(tokenizer) > cfg.vocab_size or tokenizer.pad_token_id != cfg.text_pad_token_id:
        raise ValueError(
            f"tokenizer {str(source)!r} (size {len(tokenizer)}, pad id {tokenizer.pad_token_id}) does not fit the "
            f"model (vocab_size {cfg.vocab_size}, pad id {cfg.text_pad_token_id})"
        )


def build_meter(
    config: Mapping[str, Any],
    *,
    checkpoint: str | Path | None,
    tokenizer: str | Path,
    image_size: int | None = None,
    seed: int = 0,
    name: str = "meter",
) -> MeterAdapter:
    """Build a METER-layout adapter in eval mode.

    ``config`` is a reference-style ``_config`` dict. Precedence of settings: ``image_size``
    argument > ``config`` > the checkpoint's Lightning hparams config > :class:`MeterConfig`
    defaults (the published base model). The model is constructed after
    ``torch.manual_seed(seed)`` (in a forked RNG), so a build without ``checkpoint`` is a
    deterministic random model; with one, the checkpoint's visual position embedding is re-gridded to the image
    size and loaded (see :func:`load_into`). A checkpoint carrying the video mode's temporal
    embedding sets ``temporal_frames`` unless ``config`` does; ``describe()["temporal_embedding"]``
    says whether it was loaded or is zero.
    """
    state_dict, hparams = load_checkpoint(checkpoint) if checkpoint is not None else (None, None)
    cfg = MeterConfig.from_reference(config, defaults=hparams)
    if image_size is not None:
        cfg = dataclasses.replace(cfg, image_size=image_size)
    if state_dict is not None and TEMPORAL_EMBED_KEY in state_dict and "temporal_frames" not in config:
        cfg = dataclasses.replace(cfg, temporal_frames=state_dict[TEMPORAL_EMBED_KEY].shape[-2])
    tok = load_tokenizer(tokenizer)
    _check_tokenizer(tok, cfg, tokenizer)

    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
        torch.manual_seed(seed)
        model = MeterModel(cfg)
    provenance: dict[str, Any] = {"name": name, "tokenizer": str(tokenizer), "checkpoint": None}
    load_info: dict[str, Any] = {"random_init_seed": seed}
    temporal = "zero-init (random model, no checkpoint)"
    unavailable: set[str] = set()
    if state_dict is not None:
        report = load_into(model, state_dict, source=str(checkpoint))
        unavailable = report.unavailable_capabilities
        provenance.update(checkpoint=str(Path(checkpoint).resolve()), checkpoint_sha256=sha256_file(Path(checkpoint)))
        temporal = f"loaded ({cfg.temporal_frames} frames)" if TEMPORAL_EMBED_KEY in state_dict else "zero-init (image checkpoint)"
        load_info = {"hparams_config_found": hparams is not None, "missing_keys": report.missing, "ignored_keys": report.ignored}
    model.eval()
    adapter = MeterAdapter(model, tok, cfg.image_size, provenance, unavailable=unavailable, load_info=load_info,
                           temporal_embedding=temporal)
    return adapter.eval()
