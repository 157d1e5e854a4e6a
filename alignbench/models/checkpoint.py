"""Checkpoint files of the families with their own networks (METER, ALBEF): reading them and
checking that a state dict fits a model before loading it, with errors that name the file and
the offending keys.

A family prepares the state dict (renames keys, re-grids position embeddings) and describes its
layout in a :class:`KeyPolicy`; :func:`load_checked` does the rest.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

_SHOWN = 5


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable or does not fit the model."""


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


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], Mapping[str, Any]]:
    """Read a checkpoint file -> ``(state_dict, the file's top-level mapping)``.

    Accepts a Lightning ``{"state_dict": ...}``, a ``{"model": ...}`` dict or a bare state dict,
    in ``.ckpt``/``.pt``/``.pth`` (``torch.load(weights_only=True)``) or ``.safetensors``; the
    top-level mapping carries whatever else the file holds (e.g. Lightning ``hyper_parameters``).
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder; this model family reads one checkpoint file (.ckpt, .pt, .pth or .safetensors)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    top = _read(path)
    if not isinstance(top, Mapping):
        raise CheckpointError(f"{path} holds a {type(top).__name__}, not a state dict")
    obj = top
    for key in ("state_dict", "model"):
        if isinstance(top.get(key), Mapping):
            obj = top[key]
            break
    state_dict = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state_dict:
        raise CheckpointError(f"{path} contains no tensors")
    return state_dict, top


@dataclass(frozen=True)
class KeyPolicy:
    """Which differences between a checkpoint and a model of one layout are expected.

    ``position_ids_key``: a text ``position_ids`` buffer the model does not keep, dropped once it
    is checked to be ``arange(n)``; ``droppable``: prefixes of checkpoint keys the model never
    uses (dropped); ``optional``: prefixes of model keys a checkpoint may lack (left at their
    initial values); ``head_capabilities``: prefixes of head weights a checkpoint may lack, and
    the capability that is then unavailable.
    """

    layout: str
    position_ids_key: str
    droppable: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    head_capabilities: Mapping[str, str] = field(default_factory=dict)


@dataclass
class LoadReport:
    """What :func:`load_checked` did: model keys left at their initial values, checkpoint keys dropped."""

    missing: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    head_capabilities: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def unavailable_capabilities(self) -> set[str]:
        """Capabilities whose head weights the checkpoint lacked."""
        return {cap for prefix, cap in self.head_capabilities.items() if any(k.startswith(prefix) for k in self.missing)}


def _head(keys: list[str]) -> str:
    more = f", ... ({len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def load_checked(model: torch.nn.Module, state: Mapping[str, torch.Tensor], policy: KeyPolicy, source: str) -> LoadReport:
    """Load ``state`` into ``model`` after checking that it fits ``policy``'s layout.

    Keys the policy allows to differ are dropped or left missing; any other missing or
    unexpected key, or a shape mismatch, raises :class:`CheckpointError` naming ``source`` and
    the first offending keys (and saying so when nothing matches: another architecture).
    """
    expected = model.state_dict()
    position_ids = state.get(policy.position_ids_key)
    if position_ids is not None and policy.position_ids_key not in expected:
        if not torch.equal(position_ids.flatten(), torch.arange(position_ids.numel(), dtype=position_ids.dtype)):
            raise CheckpointError(f"{source}: {policy.position_ids_key} is not arange(n); refusing to drop it")
    extra = sorted(k for k in state if k not in expected)
    ignored = [k for k in extra if k == policy.position_ids_key or k.startswith(policy.droppable)]
    unexpected = [k for k in extra if k not in ignored]
    missing = [k for k in expected if k not in state]
    required = [k for k in missing if not k.startswith(policy.optional + tuple(policy.head_capabilities))]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}" for k, v in expected.items() if k in state and state[k].shape != v.shape
    ]
    problems = [
        f"{len(keys)} {what} ({_head(keys)})"
        for what, keys in (("missing keys", required), ("unexpected keys", unexpected), ("shape mismatches", mismatched))
        if keys
    ]
    if problems:
        hint = " It looks like a checkpoint of another architecture." if len(missing) == len(expected) else ""
        raise CheckpointError(f"{source} does not fit the {policy.layout} layout: {'; '.join(problems)}.{hint}")
    dropped = set(ignored)
    model.load_state_dict({k: v for k, v in state.items() if k not in dropped}, strict=False)
    return LoadReport(missing=missing, ignored=ignored, head_capabilities=policy.head_capabilities)
