"""Model registry and factory, in the style of open_clip's JSON model configs.

Every registered model is a JSON file in ``alignbench/model_configs/`` naming its family, its
architecture config, where its weights live and its tokenizer. A family is a builder function
registered under the family name; other packages add models or families through the
``alignbench.models`` / ``alignbench.model_families`` entry points.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..registry import Registry
from .base import AlignmentModel
from .hub import CheckpointSource, resolve_checkpoint, sha256_file


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: family, architecture config, weights and tokenizer."""

    name: str
    family: str
    description: str
    config: dict[str, Any] = field(default_factory=dict)
    checkpoint: CheckpointSource | None = None
    tokenizer: str | None = None
    image_size: int | None = None
    paper: str = ""

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> "ModelSpec":
        ckpt = data.get("checkpoint")
        return cls(
            name=name,
            family=data["family"],
            description=data.get("description", ""),
            config=data.get("config", {}),
            checkpoint=CheckpointSource(**ckpt) if ckpt else None,
            tokenizer=data.get("tokenizer"),
            image_size=data.get("image_size"),
            paper=data.get("paper", ""),
        )

    def source(self) -> str:
        return self.checkpoint.describe() if self.checkpoint else "random init (no download)"


FamilyBuilder = Callable[..., AlignmentModel]

MODELS: Registry[ModelSpec] = Registry("model", "alignbench.models")
FAMILIES: Registry[FamilyBuilder] = Registry("model family", "alignbench.model_families")

CONFIG_DIR = Path(__file__).resolve().parents[1] / "model_configs"
ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
BUNDLED_PREFIX = "alignbench:"


def resolve_tokenizer(ref: str | None) -> str | None:
    """``alignbench:NAME`` names a tokenizer shipped in the package; anything else (a folder or
    hub id) is returned as it is."""
    if ref and ref.startswith(BUNDLED_PREFIX):
        return str(ASSETS_DIR / ref[len(BUNDLED_PREFIX) :])
    return ref


def _register_builtin_models() -> None:
    for path in sorted(CONFIG_DIR.glob("*.json")):
        MODELS.register(path.stem, ModelSpec.from_json(path.stem, json.loads(path.read_text())))


def read_model_config(path: str | Path) -> dict[str, Any]:
    """A JSON architecture config (the reference's config keys for METER-layout models)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"model config {p} does not exist")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"model config {p} is not valid JSON: {e}") from None


def load_model(
    name: str,
    *,
    checkpoint: str | Path | None = None,
    model_config: str | Path | dict[str, Any] | None = None,
    tokenizer: str | None = None,
    image_size: int | None = None,
    device: str = "cpu",
) -> AlignmentModel:
    """Build a registered model, its weights from ``checkpoint`` or the registered source.

    ``model_config`` (a dict or JSON path) replaces the registered architecture config;
    ``tokenizer`` (a local folder or hub id) replaces the registered tokenizer. Models are
    returned in ``eval()`` mode on ``device``.
    """
    spec = MODELS.get(name)
    if isinstance(model_config, (str, Path)):
        model_config = read_model_config(model_config)
    config = dict(model_config) if model_config is not None else dict(spec.config)
    if checkpoint is not None:
        ckpt_path: Path | None = Path(checkpoint)
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"checkpoint {ckpt_path} does not exist")
    elif spec.checkpoint is not None:
        ckpt_path = resolve_checkpoint(spec.checkpoint, name)
    else:
        ckpt_path = None
    build = FAMILIES.get(spec.family)
    model = build(
        config,
        checkpoint=ckpt_path,
        tokenizer=resolve_tokenizer(tokenizer or spec.tokenizer),
        image_size=image_size or config.get("image_size") or spec.image_size,
    )
    model.provenance = {
        **getattr(model, "provenance", {}),
        "name": name,
        "family": spec.family,
        "source": str(ckpt_path) if checkpoint is not None else spec.source(),
        "checkpoint": str(ckpt_path) if ckpt_path else None,
        "checkpoint_sha256": sha256_file(ckpt_path) if ckpt_path else None,
        "config_sha256": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest(),
        "tokenizer": tokenizer or spec.tokenizer,
    }
    return model.to(device).eval()


# Each family's package defines ``build(config, *, checkpoint, tokenizer, image_size)``.
BUILTIN_FAMILIES = ("meter", "clip", "albef", "blip", "vilt", "flava", "bridgetower")
for _family in BUILTIN_FAMILIES:
    FAMILIES.register_lazy(_family, f"alignbench.models.{_family}:build")
_register_builtin_models()
