"""Model registry and factory, in the style of open_clip's JSON model configs.

Every registered model is a JSON file in ``alignbench/model_configs/`` naming its family, its
architecture config, where its weights live and its tokenizer (and, for hub models whose
architecture is only known after a download, a ``parameters`` count with its source in
``parameters_note``). A family is a builder registered under the family name: a classmethod of
the family's adapter class, or a function whose return annotation is that class (see
:func:`family_adapter`); other packages add models or families through the
``alignbench.models`` / ``alignbench.model_families`` entry points.
"""

from __future__ import annotations

import hashlib
import json
import typing
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import torch

from ..registry import Registry
from .base import AlignmentModel
from .hub import CheckpointSource, resolve_checkpoint, sha256_path


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
    parameters: int | None = None

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
            parameters=data.get("parameters"),
        )

    def source(self) -> str:
        """Where the weights come from: the registered checkpoint, else what the family reads
        from the config (e.g. ``hf://REPO@REVISION``), else a seeded random initialisation."""
        if self.checkpoint:
            return self.checkpoint.describe()
        adapter = family_adapter(self.family)
        return (adapter.weights_source(self.config) if adapter else None) or "random init (no download)"

    def parameter_count(self) -> int | None:
        """Parameters of the registered model: counted exactly when the family can build the
        architecture offline (on the meta device, no memory), else the JSON ``parameters``
        field, else ``None``."""
        adapter = family_adapter(self.family)
        counted = _count_parameters(adapter, json.dumps(self.config, sort_keys=True)) if adapter else None
        return counted if counted is not None else self.parameters


@lru_cache(maxsize=None)
def _count_parameters(adapter: type[AlignmentModel], config_json: str) -> int | None:
    with torch.device("meta"):
        network = adapter.architecture(json.loads(config_json))
    return None if network is None else sum(p.numel() for p in network.parameters())


FamilyBuilder = Callable[..., AlignmentModel]

MODELS: Registry[ModelSpec] = Registry("model", "alignbench.models")
FAMILIES: Registry[FamilyBuilder] = Registry("model family", "alignbench.model_families")

CONFIG_DIR = Path(__file__).resolve().parents[1] / "model_configs"
ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
BUNDLED_PREFIX = "alignbench:"


def family_adapter(family: str) -> type[AlignmentModel] | None:
    """The adapter class of ``family``: the class whose classmethod the builder is, else the
    builder's return annotation (``None`` when a plugin builder names no :class:`AlignmentModel`
    subclass either way)."""
    builder = FAMILIES.get(family)
    owner = getattr(builder, "__self__", None)
    adapter = owner if isinstance(owner, type) else typing.get_type_hints(builder).get("return")
    return adapter if isinstance(adapter, type) and issubclass(adapter, AlignmentModel) else None


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

    ``checkpoint`` is a file, or for families that load ``save_pretrained`` folders (BLIP,
    ViLT, FLAVA, BridgeTower) such a folder; a folder that holds a tokenizer also provides the
    tokenizer unless ``tokenizer`` is given. ``model_config`` (a dict or JSON path) replaces the
    registered architecture config; ``tokenizer`` (a local folder or hub id) replaces the
    registered tokenizer. Models are returned in ``eval()`` mode on ``device``.
    """
    spec = MODELS.get(name)
    if isinstance(model_config, (str, Path)):
        model_config = read_model_config(model_config)
    config = dict(model_config) if model_config is not None else dict(spec.config)
    if checkpoint is not None:
        ckpt_path: Path | None = _local_checkpoint(Path(checkpoint), spec.family)
        if ckpt_path.is_dir() and tokenizer is None and (ckpt_path / "tokenizer_config.json").is_file():
            tokenizer = str(ckpt_path)
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
        "checkpoint_sha256": sha256_path(ckpt_path) if ckpt_path else None,
        "config_sha256": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest(),
        "tokenizer": tokenizer or spec.tokenizer,
    }
    return model.to(device).eval()


def _local_checkpoint(path: Path, family: str) -> Path:
    """``path`` checked to exist, and to be a file unless the family reads save_pretrained folders."""
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    adapter = family_adapter(family)
    if path.is_dir() and adapter is not None and not adapter.checkpoint_folders:
        raise FileNotFoundError(f"checkpoint {path} is a folder; {family} models read one checkpoint file")
    return path


# Each family's package defines ``build(config, *, checkpoint, tokenizer, image_size)``.
BUILTIN_FAMILIES = ("meter", "clip", "albef", "blip", "vilt", "flava", "bridgetower")
for _family in BUILTIN_FAMILIES:
    FAMILIES.register_lazy(_family, f"alignbench.models.{_family}:build")
_register_builtin_models()
