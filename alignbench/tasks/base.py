"""Task classes: what a task computes per sample and how it aggregates."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import torch

from ..data.sources import DATA_SOURCES
from ..models.base import AlignmentModel
from .config import TaskConfig


MAX_AUTO_WORKERS = 8
"""The most DataLoader workers ``num_workers="auto"`` starts."""
MIN_BATCHES_FOR_WORKERS = 4
"""``num_workers="auto"`` prepares passes of fewer batches in the main process."""


@dataclass(frozen=True)
class RunOptions:
    """How a run executes; recorded in results, none of it changes a score beyond tolerance."""

    device: str = "cpu"
    precision: str = "fp32"
    batch_size: int | Literal["auto"] = 8
    num_workers: int | Literal["auto"] = 0
    limit: int | None = None
    map_method: str | None = None  # None: the model family's default method
    quiet: bool = False
    resume: bool = True

    def workers_for(self, batches: int) -> int:
        """DataLoader worker processes for a pass over ``batches`` batches: ``num_workers``, or
        for ``"auto"`` none for a pass of fewer than :data:`MIN_BATCHES_FOR_WORKERS` batches
        (starting workers would cost more than they save), else one per CPU core this process
        may use (shared among the processes of a ``torchrun`` node), at most
        :data:`MAX_AUTO_WORKERS`. A model running on the CPU with several intra-op threads
        leaves the workers only the cores its threads do not use: workers competing with the
        forward's threads slow both down (see ``benchmarks/README.md``)."""
        if self.num_workers != "auto":
            return self.num_workers
        if batches < MIN_BATCHES_FOR_WORKERS:
            return 0
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        cores //= max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        threads = torch.get_num_threads()
        if torch.device(self.device).type == "cpu" and threads > 1:
            cores -= threads
        return max(0, min(MAX_AUTO_WORKERS, cores))

    def autocast(self) -> Any:
        """The autocast context for ``precision`` (a no-op for fp32)."""
        dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
        if self.precision == "fp32":
            return torch.autocast(device_type=torch.device(self.device).type, enabled=False)
        if self.precision not in dtypes:
            raise ValueError(f"precision must be fp32, bf16 or fp16, got {self.precision!r}")
        return torch.autocast(device_type=torch.device(self.device).type, dtype=dtypes[self.precision])


class Task(ABC):
    """A benchmark task built from a :class:`TaskConfig` plus run-time options."""

    def __init__(self, config: TaskConfig, data_dir: str | None = None, options: dict[str, Any] | None = None) -> None:
        self.config = config
        self.data_dir = data_dir
        self.options = dict(options or {})
        self._source: Any = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def requires(self) -> frozenset[str]:
        return frozenset(self.config.requires)

    @property
    def source(self) -> Any:
        """The task's data source, built on first use from the definition's ``dataset.source``."""
        if self._source is None:
            build = DATA_SOURCES.get(self.config.dataset["source"])
            self._source = build(self.config.dataset, self.data_dir, self.options)
        return self._source

    def describe_dataset(self) -> dict[str, Any]:
        """Dataset provenance for results: source, hub id, revision, split, fingerprint."""
        ds = self.config.dataset
        return {
            "source": ds["source"],
            "hub_id": ds.get("hub_id"),
            "revision": ds.get("revision"),
            "split": ds.get("split"),
            "data_dir": str(self.data_dir) if self.data_dir else None,
            "fingerprint": self.source.fingerprint,
            **{f"source_{k}": v for k, v in self.source.describe().items()},
        }

    def describe_protocol(self) -> dict[str, Any]:
        """Protocol parameters for results (empty for tasks without one)."""
        return {}

    @abstractmethod
    def run(self, model: AlignmentModel, model_name: str, opts: RunOptions, output_dir: Path | None) -> dict[str, Any]:
        """Score the task and return its result dict (see :func:`alignbench.runner.result_header`);
        with ``output_dir``, also write the result files there."""


class SampleTask(Task):
    """A task scored sample by sample, so the runner can stream, batch and resume it."""

    def run(self, model: AlignmentModel, model_name: str, opts: RunOptions, output_dir: Path | None) -> dict[str, Any]:
        from ..runner import run_sample_task

        return run_sample_task(self, model, model_name, opts, output_dir)

    @abstractmethod
    def sample_ids(self) -> list[str]:
        """Stable ids of all samples, in dataset order."""

    @abstractmethod
    def torch_dataset(self, model: AlignmentModel, indices: list[int]) -> torch.utils.data.Dataset:
        """A dataset of the samples at ``indices``, preprocessed for ``model``."""

    @abstractmethod
    def collate_fn(self, model: AlignmentModel) -> Callable[[list[Any]], Any]:
        """A picklable collate function producing one batch object with ``.to(device)``."""

    @abstractmethod
    def score_batch(self, model: AlignmentModel, batch: Any, opts: RunOptions) -> list[dict]:
        """Per-sample records (JSON-serialisable, each with ``sample_id``) for one batch."""

    @abstractmethod
    def aggregate(self, records: list[dict]) -> tuple[dict[str, float | None], dict[str, Any]]:
        """``(metrics, counts)`` over the per-sample records."""
