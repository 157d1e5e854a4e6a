"""Declarative task definitions: YAML files validated against a JSON schema.

Definitions live in the repository's top-level ``tasks/`` folder and ship inside the wheel as
``alignbench/_task_defs``. Extra folders can be added with the ``ALIGNBENCH_TASKS_PATH``
environment variable (``os.pathsep``-separated).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

PROBES = ("global-local", "local-local", "global", "hard-negative")

_DATASET_SCHEMA = {
    "type": "object",
    "required": ["source"],
    "properties": {
        "source": {"type": "string"},
        "hub_id": {"type": "string"},
        "config_name": {"type": "string"},
        "revision": {"type": "string"},
        "revision_note": {"type": "string"},
        "split": {"type": "string"},
        "size": {"type": "integer", "minimum": 0},
        "fields": {"type": "object", "additionalProperties": {"type": "string"}},
        "options": {"type": "object"},
        "gated": {"type": "boolean"},
    },
    "additionalProperties": False,
}

TASK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "description"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9+._-]*$"},
        "description": {"type": "string"},
        "version": {"type": "integer", "minimum": 1},
        "task_type": {"type": "string"},
        "probe": {"enum": list(PROBES)},
        "dataset": _DATASET_SCHEMA,
        "protocol": {
            "type": "object",
            "required": ["preset"],
            "properties": {"preset": {"type": "string"}},
        },
        "metrics": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "main_metric": {"type": "string"},
        "requires": {"type": "array", "items": {"enum": ["maps", "match", "embed", "video"]}},
        "options": {"type": "object"},
        "citation": {"type": "string"},
        "suite": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    },
    "additionalProperties": False,
    "oneOf": [
        {"required": ["suite"]},
        {"required": ["task_type", "probe", "dataset", "metrics", "main_metric", "requires"]},
    ],
}


class TaskDefinitionError(ValueError):
    """A task definition file that does not fit the schema."""


@dataclass(frozen=True)
class TaskConfig:
    """A validated task definition (see ``TASK_SCHEMA``)."""

    name: str
    description: str
    source_file: str
    version: int = 1
    task_type: str = ""
    probe: str = ""
    dataset: dict[str, Any] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)
    metrics: tuple[str, ...] = ()
    main_metric: str = ""
    requires: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    citation: str = ""
    suite: tuple[str, ...] = ()

    @property
    def is_suite(self) -> bool:
        return bool(self.suite)


def parse_task_definition(data: Any, source: str) -> TaskConfig:
    """Validate one definition; errors name the file and the offending field."""
    try:
        jsonschema.validate(data, TASK_SCHEMA)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise TaskDefinitionError(f"{source}: invalid task definition at {where}: {e.message}") from None
    if not data.get("suite") and data["main_metric"] not in data["metrics"]:
        raise TaskDefinitionError(f"{source}: main_metric {data['main_metric']!r} is not among metrics {data['metrics']}")
    fields_ = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return TaskConfig(source_file=source, **fields_)


def task_definition_dirs() -> list[Path]:
    """Folders searched for ``*.yaml`` task definitions, built-in first."""
    here = Path(__file__).resolve().parents[1]
    builtin = here / "_task_defs"
    if not builtin.is_dir():
        builtin = here.parent / "tasks"
    extra = [Path(p) for p in os.environ.get("ALIGNBENCH_TASKS_PATH", "").split(os.pathsep) if p]
    return [builtin, *extra]


def load_task_definitions(dirs: list[Path] | None = None) -> dict[str, TaskConfig]:
    """All definitions found in ``dirs``; a duplicate name is an error naming both files."""
    found: dict[str, TaskConfig] = {}
    for d in dirs if dirs is not None else task_definition_dirs():
        for path in sorted(Path(d).glob("*.yaml")):
            with open(path, encoding="utf-8") as f:
                cfg = parse_task_definition(yaml.safe_load(f), str(path))
            if cfg.name in found:
                raise TaskDefinitionError(f"task {cfg.name!r} is defined twice: {found[cfg.name].source_file} and {path}")
            found[cfg.name] = cfg
    return found
