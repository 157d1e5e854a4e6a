"""Task registry: declarative definitions (``tasks/*.yaml``) bound to task classes."""

from __future__ import annotations

from typing import Any

from ..registry import Registry
from .base import RunOptions, SampleTask, Task
from .config import TaskConfig, TaskDefinitionError, load_task_definitions
from .grounding import GroundingTask

TASK_TYPES: Registry[type[Task]] = Registry("task type", "alignbench.task_types")
TASK_TYPES.register("grounding", GroundingTask)
TASK_TYPES.register_lazy("retrieval", "alignbench.tasks.retrieval:RetrievalTask")
TASK_TYPES.register_lazy("hard-negative", "alignbench.tasks.hard_negative:HardNegativeTask")
TASK_TYPES.register_lazy("video-grounding", "alignbench.tasks.video:VideoGroundingTask")
TASK_TYPES.register_lazy("video-retrieval", "alignbench.tasks.video:VideoRetrievalTask")

TASKS: Registry[TaskConfig] = Registry("task", "alignbench.tasks")
for _cfg in load_task_definitions().values():
    TASKS.register(_cfg.name, _cfg)


def expand_task_names(names: list[str]) -> list[str]:
    """Task names with suites replaced by their members (order kept, duplicates dropped)."""
    out: list[str] = []
    for name in names:
        cfg = TASKS.get(name)
        for member in expand_task_names(list(cfg.suite)) if cfg.is_suite else [name]:
            if member not in out:
                out.append(member)
    return out


def load_task(name: str, data_dir: str | None = None, options: dict[str, Any] | None = None) -> Task:
    """Build the task ``name`` (not a suite) with an optional local data folder and options."""
    cfg = TASKS.get(name)
    if cfg.is_suite:
        raise ValueError(f"{name!r} is a suite of {list(cfg.suite)}; use load_tasks() or expand_task_names()")
    return TASK_TYPES.get(cfg.task_type)(cfg, data_dir=data_dir, options=options)


def load_tasks(names: list[str], data_dir: str | None = None, options: dict[str, Any] | None = None) -> list[Task]:
    """Build every task named, suites expanded."""
    return [load_task(n, data_dir, options) for n in expand_task_names(names)]


__all__ = [
    "TASKS",
    "TASK_TYPES",
    "RunOptions",
    "SampleTask",
    "Task",
    "TaskConfig",
    "TaskDefinitionError",
    "expand_task_names",
    "load_task",
    "load_tasks",
]
