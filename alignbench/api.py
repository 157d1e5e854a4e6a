"""The documented Python API; the CLI is a thin layer over these functions."""

from __future__ import annotations

from typing import Any

from .models.factory import FAMILIES, MODELS, ModelSpec, family_adapter, load_model
from .runner import evaluate
from .tasks import TASKS, expand_task_names, load_task, load_tasks


def list_models() -> list[dict[str, Any]]:
    """One row per registered model, with nothing downloaded: name, family, parameters (see
    :meth:`ModelSpec.parameter_count`), the family's capabilities and map methods (its default
    first), the weights' source and the description; ``None`` where a value is not known offline.
    """
    rows = []
    for name in MODELS.names():
        spec: ModelSpec = MODELS.get(name)
        adapter = family_adapter(spec.family)
        rows.append(
            {
                "name": name,
                "family": spec.family,
                "parameters": spec.parameter_count(),
                "capabilities": sorted(adapter.capabilities) if adapter else None,
                "map_methods": list(adapter.map_methods) if adapter else None,
                "source": spec.source(),
                "description": spec.description,
            }
        )
    return rows


def list_tasks() -> list[dict[str, Any]]:
    """One row per task or suite: name, probe, size, source, required capabilities."""
    rows = []
    for name in TASKS.names():
        cfg = TASKS.get(name)
        if cfg.is_suite:
            rows.append({"name": name, "probe": "suite", "size": None, "source": ", ".join(cfg.suite), "requires": "", "description": cfg.description})
            continue
        ds = cfg.dataset
        source = ds.get("hub_id") or ds["source"]
        if ds.get("revision"):
            source += f"@{ds['revision']}"
        rows.append(
            {
                "name": name,
                "probe": cfg.probe,
                "size": ds.get("size"),
                "source": source,
                "requires": ", ".join(cfg.requires),
                "description": cfg.description,
            }
        )
    return rows


__all__ = [
    "FAMILIES",
    "MODELS",
    "TASKS",
    "evaluate",
    "expand_task_names",
    "list_models",
    "list_tasks",
    "load_model",
    "load_task",
    "load_tasks",
]
