"""Data-source registry: how a task definition's ``dataset.source`` becomes samples.

Each builder takes ``(dataset_config, data_dir, options)`` and returns a source object with
``__len__``, ``__getitem__``, ``sample_ids``, ``fingerprint`` and ``describe()``.
"""

from __future__ import annotations

from typing import Any, Callable

from ..registry import Registry

SourceBuilder = Callable[[dict[str, Any], "str | None", dict[str, Any]], Any]

DATA_SOURCES: Registry[SourceBuilder] = Registry("data source", "alignbench.data_sources")


def _align_bench(dataset: dict[str, Any], data_dir: str | None, options: dict[str, Any]) -> Any:
    from .hf import open_grounding_source

    return open_grounding_source(
        data_dir, hub_id=dataset["hub_id"], revision=dataset.get("revision", "main"), split=dataset.get("split", "train")
    )


def synthetic_options(dataset: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """``size``, ``seed`` and ``split`` of a synthetic source: run options (``--task-option``)
    override the task definition's ``options``."""
    defaults = dataset.get("options", {})
    return {
        "size": str(options.get("size", defaults.get("size", "mini"))),
        "seed": int(options.get("seed", defaults.get("seed", 0))),
        "split": dataset.get("split", "test"),
    }


def _synthetic(dataset: dict[str, Any], data_dir: str | None, options: dict[str, Any]) -> Any:
    from .synthetic import SyntheticGroundingSource

    return SyntheticGroundingSource(**synthetic_options(dataset, options))


DATA_SOURCES.register("align-bench", _align_bench)
DATA_SOURCES.register("align-bench-synth", _synthetic)
