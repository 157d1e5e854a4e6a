"""The evaluation loop: batches, streams finished samples to disk, resumes, aggregates."""

from __future__ import annotations

import platform
import sys
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import PIL
import torch
import transformers

from .__about__ import __version__
from .models.base import AlignmentModel, require_capabilities
from .progress import progress_bar
from .results import SCHEMA_VERSION, RunStore
from .tasks.base import RunOptions, SampleTask, Task


def environment() -> dict[str, str]:
    """Versions that can move a number, for result provenance."""
    return {
        "alignbench": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "platform": platform.platform(),
    }


def _run_key(task: Task, model: AlignmentModel, model_name: str, opts: RunOptions, dataset: dict) -> dict:
    info = model.describe()
    return {
        "schema_version": SCHEMA_VERSION,
        "task": task.name,
        "task_version": task.config.version,
        "model": model_name,
        "checkpoint_sha256": info.get("checkpoint_sha256"),
        "model_config_sha256": info.get("config_sha256"),
        "image_size": model.image_size,
        "protocol": task.describe_protocol(),
        "map_method": opts.map_method,
        "precision": opts.precision,
        "dataset_fingerprint": dataset.get("fingerprint"),
    }


def _select(ids: list[str], limit: int | None) -> list[int]:
    n = len(ids) if limit is None else min(limit, len(ids))
    return list(range(n))


def run_sample_task(task: SampleTask, model: AlignmentModel, model_name: str, opts: RunOptions, output_dir: Path | None) -> dict[str, Any]:
    """Score ``task`` with ``model``; with ``output_dir``, stream records there and resume."""
    require_capabilities(model, model_name, task.name, task.requires)
    started = time.time()
    dataset_info = task.describe_dataset()
    ids = task.sample_ids()
    selected = _select(ids, opts.limit)
    store = RunStore(output_dir, model_name, task.name) if output_dir is not None else None
    records: dict[str, dict] = {}
    forward_s = 0.0
    with store if store is not None else nullcontext():
        if store is not None:
            records = store.start(_run_key(task, model, model_name, opts, dataset_info), resume=opts.resume)
        todo = [i for i in selected if ids[i] not in records]
        device = torch.device(opts.device)
        loader = torch.utils.data.DataLoader(
            task.torch_dataset(model, todo),
            batch_size=opts.batch_size,
            collate_fn=task.collate_fn(model),
            num_workers=opts.num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=False,
        )
        model.eval()
        with progress_bar(total=len(selected), initial=len(selected) - len(todo), desc=f"{model_name} | {task.name}", quiet=opts.quiet) as bar:
            for batch in loader:
                batch = batch.to(device)
                t0 = time.perf_counter()
                with torch.inference_mode():
                    new = task.score_batch(model, batch, opts)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                forward_s += time.perf_counter() - t0
                if store is not None:
                    store.append(new)
                records.update((r["sample_id"], r) for r in new)
                bar.update(len(new))
        ordered = [records[ids[i]] for i in selected]
        metrics, counts = task.aggregate(ordered)
        result = result_header(task, model, model_name, opts, dataset_info)
        result.update(
            n_samples=len(ordered),
            n_samples_total=len(ids),
            partial=len(ordered) < len(ids),
            metrics=metrics,
            counts=counts,
        )
        result["run"].update(timing(started, forward_s, computed=len(todo)), samples_resumed=len(selected) - len(todo))
        if store is not None:
            result["samples_file"] = store.samples_path.name
            store.write_result(result)
    return result


def result_header(task: Task, model: AlignmentModel, model_name: str, opts: RunOptions, dataset_info: dict[str, Any]) -> dict[str, Any]:
    """The fields every result file has, whatever the task type; tasks add
    ``n_samples``, ``n_samples_total``, ``partial``, ``metrics``, ``counts`` and timing."""
    device = torch.device(opts.device)
    return {
        "schema_version": SCHEMA_VERSION,
        "task": task.name,
        "task_version": task.config.version,
        "task_type": task.config.task_type,
        "probe": task.config.probe,
        "model": model_name,
        "main_metric": task.config.main_metric,
        "protocol": task.describe_protocol(),
        "map_method": task_map_method(task, opts),
        "dataset": dataset_info,
        "model_info": model.describe(),
        "environment": environment(),
        "run": {
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "precision": opts.precision,
            "batch_size": opts.batch_size,
            "limit": opts.limit,
        },
    }


def timing(started: float, forward_s: float, computed: int) -> dict[str, Any]:
    """Wall time, throughput and the model-forward share since ``started`` (``time.time()``)."""
    wall = time.time() - started
    return {
        "samples_computed": computed,
        "wall_time_s": round(wall, 3),
        "samples_per_s": round(computed / wall, 3) if wall > 0 else None,
        "forward_share": round(forward_s / wall, 4) if wall > 0 else None,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def task_map_method(task: Task, opts: RunOptions) -> dict[str, Any] | None:
    """The map method a task used (``None`` for tasks that use no maps)."""
    method = getattr(task, "map_method", None)
    return method(opts).as_dict() if method is not None else None


def evaluate(
    model: AlignmentModel,
    tasks: list[Task],
    *,
    model_name: str | None = None,
    output_dir: str | Path | None = None,
    options: RunOptions | None = None,
) -> list[dict[str, Any]]:
    """Run every task on ``model`` and return one result dict per task.

    Capabilities are checked for all tasks before any work starts. With ``output_dir`` the
    results and per-sample records are written there (see :mod:`alignbench.results`).
    """
    opts = options or RunOptions()
    name = model_name or model.describe().get("name") or type(model).__name__
    for task in tasks:
        require_capabilities(model, name, task.name, task.requires)
    out = Path(output_dir) if output_dir is not None else None
    model.to(opts.device)
    return [task.run(model, name, opts, out) for task in tasks]
