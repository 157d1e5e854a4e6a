"""Grids of models x tasks, and job-level sharding of a grid (``--shard i/n``) for schedulers
such as Slurm job arrays: job ``i`` of ``n`` runs every ``n``-th (model, task group) unit.

A unit is one model with one group of tasks that share their batches (see
:func:`alignbench.runner.shared_groups`), so sharding never splits a shared pass. Every job
writes to the same output folder; the result files do not overlap.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from .runner import shared_groups
from .tasks.base import Task

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Job ``index`` (0-based) of ``count`` jobs."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count} is out of range: need 0 <= i < n (e.g. 0/4 ... 3/4)")

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``"i/n"`` -> ``Shard(i, n)``."""
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if m is None:
            raise ValueError(f"shard {text!r} is not of the form i/n (e.g. 0/4; with Slurm: $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)")
        return cls(int(m.group(1)), int(m.group(2)))

    def select(self, items: Sequence[T]) -> list[T]:
        """This job's items: every ``count``-th, starting at ``index``."""
        return list(items[self.index :: self.count])


def plan(model_names: Sequence[str], tasks: Sequence[Task], shard: Shard | None = None) -> list[tuple[str, list[Task]]]:
    """The ``(model, tasks)`` jobs of the grid ``model_names x tasks`` (restricted to ``shard``),
    in grid order; a model none of whose units falls in the shard is left out."""
    units = [(name, group) for name in dict.fromkeys(model_names) for group in shared_groups(list(tasks))]
    if shard is not None:
        units = shard.select(units)
    jobs: dict[str, list[Task]] = {}
    for name, group in units:
        jobs.setdefault(name, []).extend(group)
    return list(jobs.items())
