"""Reading result files (``<output>/<model>/<task>.json``) for tables and regression checks.

Every ``*.json`` found under a results folder (recursively) must be a result file written by
``alignbench eval``; ``*.run.json`` resume keys are skipped. Anything else is an error naming
the file, so a table is never built from something that only looks like results.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema

_NULLABLE_STR = {"type": ["string", "null"]}

RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "task", "task_version", "model", "n_samples", "n_samples_total", "partial", "metrics",
        "main_metric", "protocol", "dataset", "model_info", "environment", "run",
    ],
    "properties": {
        "task": {"type": "string", "minLength": 1},
        "task_version": {"type": "integer"},
        "model": {"type": "string", "minLength": 1},
        "n_samples": {"type": "integer", "minimum": 0},
        "n_samples_total": {"type": "integer", "minimum": 0},
        "partial": {"type": "boolean"},
        "metrics": {"type": "object", "additionalProperties": {"type": ["number", "null"]}},
        "main_metric": {"type": "string"},
        "protocol": {"type": "object"},
        "map_method": {
            "type": ["object", "null"],
            "required": ["name"],
            "properties": {"name": {"type": "string"}},
        },
        "dataset": {
            "type": "object",
            "required": ["fingerprint"],
            "properties": {"fingerprint": _NULLABLE_STR, "revision": _NULLABLE_STR},
        },
        "model_info": {
            "type": "object",
            "properties": {
                "family": {"type": "string"},
                "parameters": {"type": ["integer", "null"]},
                "checkpoint_sha256": _NULLABLE_STR,
                "config_sha256": _NULLABLE_STR,
            },
        },
        "environment": {"type": "object", "required": ["alignbench"], "properties": {"alignbench": {"type": "string"}}},
        "run": {"type": "object", "properties": {"finished_at": _NULLABLE_STR}},
    },
}

DATASET_IDENTITY = ("source", "hub_id", "revision", "split", "fingerprint")


class ResultFileError(ValueError):
    """A file under a results folder that is not a valid alignbench result."""


def map_label(map_method: dict[str, Any] | None) -> str | None:
    """A short, unambiguous name of a map method (``None`` for tasks that use no maps)."""
    if map_method is None:
        return None
    return f"{map_method['name']} (layer {map_method.get('layer', '?')}, {map_method.get('head_reduction', '?')} heads)"


def finite_or_none(x: float | None) -> float | None:
    """``x`` as a float, or ``None`` when it is missing or NaN."""
    return None if x is None or math.isnan(x) else float(x)


def canonical(obj: Any) -> str:
    """Canonical JSON text of ``obj`` (sorted keys), for comparing nested settings."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def cohort_signature(task_version: int, protocol: dict, dataset: dict, n_samples: int, n_samples_total: int, partial: bool) -> dict[str, Any]:
    """Everything that must agree for two results to share a table column."""
    return {
        "task_version": task_version,
        "protocol": protocol,
        "dataset": {k: dataset.get(k) for k in DATASET_IDENTITY},
        "n_samples": n_samples,
        "n_samples_total": n_samples_total,
        "partial": partial,
    }


def signature_differences(sig: dict[str, Any], ref: dict[str, Any], *, samples: bool = True) -> list[str]:
    """Short descriptions of how cohort signature ``sig`` differs from ``ref`` (empty: equal)."""
    out = []
    if sig["task_version"] != ref["task_version"]:
        out.append(f"task v{sig['task_version']}")
    p, rp = sig["protocol"], ref["protocol"]
    if p.get("name") != rp.get("name"):
        out.append(f"protocol {p.get('name')}")
    elif p != rp:
        out.append("protocol " + ", ".join(f"{k}={p.get(k)}" for k in sorted(set(p) | set(rp)) if p.get(k) != rp.get(k)))
    d, rd = sig["dataset"], ref["dataset"]
    if d != rd:
        changed = [k for k in d if d[k] != rd.get(k) and k != "fingerprint"]
        out.append("dataset " + (", ".join(f"{k}={d[k]}" for k in changed) if changed else f"fingerprint {str(d['fingerprint'])[:8]}"))
    counts = ("n_samples", "n_samples_total", "partial")
    if samples and any(sig[k] != ref[k] for k in counts):
        out.append(f"{sig['n_samples']} of {sig['n_samples_total']} samples" + (" (partial)" if sig["partial"] else ""))
    return out


def signature_id(signature: dict[str, Any]) -> str:
    """A short stable id of a cohort signature."""
    return hashlib.sha256(canonical(signature).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class ModelIdentity:
    """Which weights a result was computed with: a table row never mixes two of these."""

    model: str
    checkpoint_sha256: str | None
    config_sha256: str | None


@dataclass(frozen=True)
class Result:
    """One validated result file; ``label`` is its path as shown in tables."""

    path: Path
    label: str
    data: dict[str, Any]

    @property
    def task(self) -> str:
        return self.data["task"]

    @property
    def model(self) -> str:
        return self.data["model"]

    @property
    def metrics(self) -> dict[str, float | None]:
        return self.data["metrics"]

    @property
    def main_metric(self) -> str:
        return self.data["main_metric"]

    @property
    def map_label(self) -> str | None:
        return map_label(self.data.get("map_method"))

    @property
    def identity(self) -> ModelIdentity:
        info = self.data["model_info"]
        return ModelIdentity(self.model, info.get("checkpoint_sha256"), info.get("config_sha256"))

    @cached_property
    def signature(self) -> dict[str, Any]:
        d = self.data
        return cohort_signature(d["task_version"], d["protocol"], d["dataset"], d["n_samples"], d["n_samples_total"], d["partial"])

    @property
    def provenance(self) -> dict[str, Any]:
        """Where a table cell comes from: result file, alignbench version, date of the run."""
        return {"file": self.label, "alignbench": self.data["environment"]["alignbench"], "date": self.data["run"].get("finished_at")}


def read_result(path: Path, label: str | None = None) -> Result:
    """Read and validate one result file; errors name the file and what is wrong."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultFileError(f"{path}: not a readable JSON result file ({e})") from None
    try:
        jsonschema.validate(data, RESULT_SCHEMA)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise ResultFileError(f"{path}: not an alignbench result file: at {where}: {e.message}") from None
    if data["main_metric"] not in data["metrics"]:
        raise ResultFileError(f"{path}: main_metric {data['main_metric']!r} is not among its metrics {sorted(data['metrics'])}")
    return Result(path=path, label=label or str(path), data=data)


def find_result_files(root: Path) -> list[Path]:
    """Result files under ``root`` (or ``root`` itself), sorted; resume keys are skipped."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"results path {root} does not exist")
    return sorted(p for p in root.rglob("*.json") if not p.name.endswith(".run.json") and not p.name.startswith("."))


def load_results(roots: list[str | Path]) -> list[Result]:
    """Every result under ``roots``; labels are paths relative to the root they were found in."""
    results = []
    for root in map(Path, roots):
        for path in find_result_files(root):
            label = path.name if path == root else f"{root.name}/{path.relative_to(root).as_posix()}"
            results.append(read_result(path, label))
    if not results:
        raise ResultFileError(f"no result files found in {', '.join(map(str, roots))}")
    return results
