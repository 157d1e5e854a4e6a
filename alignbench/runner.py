"""The evaluation loop: batches, streams finished samples to disk, resumes, aggregates."""

from __future__ import annotations

import logging
import platform
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import PIL
import torch
import transformers
from threadpoolctl import ThreadpoolController, threadpool_limits

from .__about__ import __version__
from .distributed import World, current_world
from .models.base import AlignmentModel, require_capabilities
from .progress import progress_bar
from .results import SCHEMA_VERSION, RunStore
from .tasks.base import RunOptions, SampleTask, Task

log = logging.getLogger(__name__)

MAX_AUTO_BATCH = 256
"""The largest batch size ``batch_size="auto"`` tries."""

CUDA_MEMORY_SHARE = 0.8
"""``batch_size="auto"`` keeps a probe batch's peak CUDA memory below this share of the GPU,
leaving room for batches with longer captions than the probe's."""

CPU_PATIENCE = 2
"""On CPU, ``batch_size="auto"`` stops growing the batch after this many sizes in a row that
do not raise throughput by 10%."""


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


def run_key(task: Task, model: AlignmentModel, model_name: str, opts: RunOptions, dataset: dict) -> dict:
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
        "map_method": task_map_method(task, opts, model) or opts.map_method,  # layer and heads too, for map tasks
        "precision": opts.precision,
        "dataset_fingerprint": dataset.get("fingerprint"),
    }


def _select(ids: list[str], limit: int | None) -> list[int]:
    n = len(ids) if limit is None else min(limit, len(ids))
    return list(range(n))


_THREADPOOLS = ThreadpoolController()


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch and BLAS single-threaded inside the block.

    Data preparation works on small per-sample arrays, where intra-op threads only add
    synchronisation (on a loaded machine, 10-40x slower elementwise ops); parallelism comes
    from DataLoader workers instead. The model forward keeps the process's thread settings.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _THREADPOOLS.limit(limits=1):
            yield
    finally:
        torch.set_num_threads(threads)


def _init_worker(worker_id: int) -> None:
    """DataLoader worker setup: torch already runs one thread per worker; so does BLAS here."""
    threadpool_limits(limits=1)


def _batches(loader: torch.utils.data.DataLoader, device: torch.device) -> Iterator[Any]:
    """The loader's batches on ``device``; main-process preparation runs single-threaded."""
    it = iter(loader)
    while True:
        with single_threaded() if loader.num_workers == 0 else nullcontext():
            batch = next(it, None)
        if batch is None:
            return
        yield batch.to(device)


@contextmanager
def _shared_maps(model: AlignmentModel) -> Iterator[None]:
    """Inside the block, repeated ``text_image_maps`` calls on the same tensors run the model once."""
    compute = model.text_image_maps
    memo: dict[tuple, torch.Tensor] = {}

    def maps(pixel_values: torch.Tensor, text: Any, method: Any) -> torch.Tensor:
        key = (id(pixel_values), id(text), method)
        if key not in memo:
            memo[key] = compute(pixel_values, text, method)
        return memo[key]

    model.text_image_maps = maps  # an instance attribute shadows the method
    try:
        yield
    finally:
        del model.text_image_maps


def _score(tasks: list[SampleTask], model: AlignmentModel, batch: Any, opts: RunOptions, device: torch.device) -> tuple[list[list[dict]], float]:
    """Each task's records for one batch, and the seconds spent in the model (device work
    included). Tasks sharing a batch share one forward pass."""
    t0 = time.perf_counter()
    with torch.inference_mode(), _shared_maps(model) if len(tasks) > 1 else nullcontext():
        records = [task.score_batch(model, batch, opts) for task in tasks]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return records, time.perf_counter() - t0


def _is_oom(exc: RuntimeError) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc)


@dataclass
class AutoBatch:
    """What :func:`auto_batch_size` found: the size, and each task's records of the largest
    probe batch (the first ``len(records[0])`` samples, so the run need not score them again)."""

    size: int
    records: list[list[dict]]
    forward_s: float


def auto_batch_size(tasks: list[SampleTask], model: AlignmentModel, opts: RunOptions, indices: list[int], max_batch: int = MAX_AUTO_BATCH) -> AutoBatch:
    """The batch size for ``batch_size="auto"``.

    The first 1, 2, 4, ... samples (at most ``max_batch`` and the number of samples) are
    scored as one batch. On a GPU the sizes grow until a batch runs out of memory or uses more
    than :data:`CUDA_MEMORY_SHARE` of it, and the largest size before that wins. On CPU,
    where memory is rarely the limit and throughput is, a size counts when it raises the best
    throughput so far by 10%; the sizes stop growing after :data:`CPU_PATIENCE` sizes in a
    row that do not (one slow measurement, a descheduled process, must not stop the search),
    and the size of the best throughput wins. ``tasks`` share their batches (see
    :func:`run_sample_tasks`).
    """
    device = torch.device(opts.device)
    max_batch = min(max_batch, len(indices))
    dataset = tasks[0].torch_dataset(model, indices[:max_batch])
    collate = tasks[0].collate_fn(model)
    items: list[Any] = []
    found = AutoBatch(1, [[] for _ in tasks], 0.0)
    best_rate, size, stalls = 0.0, 1, 0
    while size <= max_batch and stalls < CPU_PATIENCE:
        with single_threaded():
            items.extend(dataset[k] for k in range(len(items), size))
            batch = collate(items[:size]).to(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        try:
            records, seconds = _score(tasks, model, batch, opts, device)
        except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is one
            if not _is_oom(exc):
                raise
            break
        finally:
            del batch
            if device.type == "cuda":
                torch.cuda.empty_cache()
        found.records, found.forward_s = records, found.forward_s + seconds
        rate = size / seconds
        if device.type == "cuda":
            if torch.cuda.max_memory_allocated(device) > CUDA_MEMORY_SHARE * torch.cuda.get_device_properties(device).total_memory:
                break
            found.size = size
        elif rate >= 1.1 * best_rate:
            found.size, best_rate, stalls = size, rate, 0
        else:
            stalls += 1
        size *= 2
    log.info("batch size auto: %d for %s on %s", found.size, ", ".join(t.name for t in tasks), device)
    return found


@dataclass
class _TaskRun:
    """One task's samples, finished records and store during a run."""

    task: SampleTask
    store: RunStore | None
    dataset_info: dict[str, Any]
    ids: list[str]
    selected: list[int]
    records: dict[str, dict]

    @property
    def todo(self) -> list[int]:
        return [i for i in self.selected if self.ids[i] not in self.records]

    def add(self, records: list[dict]) -> None:
        """Keep finished records and append them to the store (flushed)."""
        if self.store is not None:
            self.store.append(records)
        self.records.update((r["sample_id"], r) for r in records)


def _open_run(task: SampleTask, model: AlignmentModel, model_name: str, opts: RunOptions, output_dir: Path | None,
              stack: ExitStack, world: World) -> _TaskRun:
    """Open a task's store and read its finished records: rank 0 takes the lock and checks
    the run key; in a distributed run every rank then appends to its own part file."""
    dataset_info = task.describe_dataset()
    ids = task.sample_ids()
    run = _TaskRun(task, None, dataset_info, ids, _select(ids, opts.limit), {})
    if output_dir is None:
        return run
    run.store = store = RunStore(output_dir, model_name, task.name)
    key = run_key(task, model, model_name, opts, dataset_info)
    run.records = world.on_main(lambda: stack.enter_context(store).start(key, resume=opts.resume))
    if world.size > 1:
        store.append_to_part(world.rank)
        stack.callback(store.close)
    return run


def run_sample_task(task: SampleTask, model: AlignmentModel, model_name: str, opts: RunOptions, output_dir: Path | None) -> dict[str, Any]:
    """Score ``task`` with ``model``; with ``output_dir``, stream records there and resume.

    Finished records are appended (flushed, fsynced) after every batch, so a run killed at any
    point resumes with only the missing samples computed. ``opts.batch_size`` may be
    ``"auto"`` (see :func:`auto_batch_size`). A batch that runs out of device memory is not
    lost: the batch size is halved for it and the rest of the run (recorded as
    ``run.oom_batch_halvings``).
    """
    return run_sample_tasks([task], model, model_name, opts, output_dir)[0]


def run_sample_tasks(tasks: list[SampleTask], model: AlignmentModel, model_name: str, opts: RunOptions, output_dir: Path | None) -> list[dict[str, Any]]:
    """Score tasks that read identical batches (equal :func:`shared_batch_key`) in one pass:
    one data pipeline and one model forward per batch for all of them.

    Each task keeps its own records, store and result; tasks at different points of a resumed
    run are scored one after the other instead. Their results report the shared pass's wall
    time and forward time.
    """
    for task in tasks:
        require_capabilities(model, model_name, task.name, task.requires)
    world = current_world()
    if world.size > 1 and output_dir is None:
        raise ValueError("a distributed run needs an output folder: its ranks exchange per-sample records through it")
    with ExitStack() as stack:
        runs = [_open_run(task, model, model_name, opts, output_dir, stack, world) for task in tasks]
        groups = [runs] if all(r.todo == runs[0].todo and r.selected == runs[0].selected for r in runs) else [[r] for r in runs]
        return [result for group in groups for result in _run_group(group, model, model_name, opts, world)]


def _run_group(runs: list[_TaskRun], model: AlignmentModel, model_name: str, opts: RunOptions, world: World) -> list[dict[str, Any]]:
    """Score a group's missing samples (this rank's batches of them) and, on rank 0, write
    the results; every rank returns them."""
    started = time.time()
    lead, tasks = runs[0], [r.task for r in runs]
    todo = lead.todo
    device = torch.device(opts.device)
    model.eval()
    forward_s, batch_size, rest = 0.0, 1, todo
    if opts.batch_size != "auto":
        batch_size = int(opts.batch_size)
    elif todo:  # the probe's largest batch is real work: rank 0 keeps its records
        auto = world.on_main(lambda: auto_batch_size(tasks, model, opts, todo))
        batch_size, rest = auto.size, todo[len(auto.records[0]) :]
        if world.is_main:
            forward_s = auto.forward_s
            for run, records in zip(runs, auto.records):
                run.add(records)
    mine = world.shard(rest, batch_size)
    desc = f"{model_name} | {' + '.join(t.name for t in tasks)}"
    total, initial = (len(lead.selected), len(lead.selected) - len(rest)) if world.size == 1 else (len(mine), 0)
    remaining, halvings, workers = mine, 0, opts.workers_for(-(-len(mine) // batch_size))
    with progress_bar(total=total, initial=initial, desc=desc, quiet=opts.quiet or not world.is_main) as bar:
        while remaining:
            try:
                for batch in _batches(_loader(lead.task, model, remaining, batch_size, workers, opts), device):
                    new, seconds = _score(tasks, model, batch, opts, device)
                    forward_s += seconds
                    for run, records in zip(runs, new):
                        run.add(records)
                    remaining = remaining[len(new[0]) :]
                    bar.update(len(new[0]))
            except RuntimeError as exc:  # out of memory on a batch (longer captions than the probe's): halve and go on
                if not _is_oom(exc) or batch_size == 1:
                    raise
                batch_size, halvings = batch_size // 2, halvings + 1
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                log.warning("out of device memory: batch size halved to %d for the remaining %d samples", batch_size, len(remaining))
    world.barrier()  # every rank's part file is complete
    batching = _Batching(batch_size, workers, halvings)
    return world.on_main(lambda: [_finish(run, model, model_name, opts, started, forward_s, len(todo), batching, world) for run in runs])


def _loader(task: SampleTask, model: AlignmentModel, indices: list[int], batch_size: int, workers: int,
            opts: RunOptions) -> torch.utils.data.DataLoader:
    """Batches of ``task``'s samples at ``indices``, prepared in ``workers`` worker processes."""
    return torch.utils.data.DataLoader(
        task.torch_dataset(model, indices),
        batch_size=batch_size,
        collate_fn=task.collate_fn(model),
        num_workers=workers,
        pin_memory=torch.device(opts.device).type == "cuda",
        worker_init_fn=_init_worker if workers > 0 else None,
        persistent_workers=False,
    )


@dataclass(frozen=True)
class _Batching:
    """How a run's batches were formed: the final batch size, the worker processes of the main
    pass and how often running out of device memory halved the batch size."""

    batch_size: int
    workers: int
    oom_halvings: int


def _finish(run: _TaskRun, model: AlignmentModel, model_name: str, opts: RunOptions, started: float, forward_s: float,
            computed: int, batching: _Batching, world: World) -> dict[str, Any]:
    """Aggregate a run's records (merging the ranks' part files first) into its result and write it."""
    if world.size > 1 and run.store is not None:
        run.store.merge_parts()
        run.records = {r["sample_id"]: r for r in run.store.records()}
    ordered = [run.records[run.ids[i]] for i in run.selected]
    metrics, counts = run.task.aggregate(ordered)
    result = result_header(run.task, model, model_name, opts, run.dataset_info)
    result.update(
        n_samples=len(ordered),
        n_samples_total=len(run.ids),
        partial=len(ordered) < len(run.ids),
        metrics=metrics,
        counts=counts,
    )
    result["run"].update(
        timing(started, forward_s, computed=computed),
        samples_resumed=len(run.selected) - computed,
        batch_size_used=batching.batch_size,
        oom_batch_halvings=batching.oom_halvings,
        num_workers=opts.num_workers,
        num_workers_used=batching.workers,
        threads=torch.get_num_threads(),
        world_size=world.size,
    )
    if run.store is not None:
        result["samples_file"] = run.store.samples_path.name
        run.store.write_result(result)
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
        "map_method": task_map_method(task, opts, model),
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


def task_map_method(task: Task, opts: RunOptions, model: AlignmentModel) -> dict[str, Any] | None:
    """The map method a task used with ``model`` as results record it (``None`` for tasks that use no maps)."""
    describe = getattr(task, "describe_map_method", None)
    return describe(opts, model) if describe is not None else None


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
    opts = resolve_map_method(options or RunOptions(), model)
    name = model_name or model.describe().get("name") or type(model).__name__
    for task in tasks:
        require_capabilities(model, name, task.name, task.requires)
    out = Path(output_dir) if output_dir is not None else None
    model.to(opts.device)
    results = []
    for group in shared_groups(tasks):
        if len(group) > 1:
            results += run_sample_tasks(group, model, name, opts, out)
        else:
            results.append(group[0].run(model, name, opts, out))
    return results


def resolve_map_method(opts: RunOptions, model: AlignmentModel) -> RunOptions:
    """``map_method=None`` means the model family's default (its first map method); a method
    the family does not offer is an error before any work starts."""
    if opts.map_method is None:
        return replace(opts, map_method=model.map_methods[0] if model.map_methods else "attention")
    if model.map_methods and opts.map_method not in model.map_methods:
        raise ValueError(
            f"map method {opts.map_method!r} is not offered by {model.family} models; choose one of {list(model.map_methods)}"
        )
    return opts


def shared_batch_key(task: Task) -> Any:
    """A hashable key, equal for sample tasks that read identical batches, or ``None``.

    A :class:`SampleTask` opts in with a ``shared_batch_key()`` method (e.g. both grounding
    probes on one dataset and protocol); tasks without one always run alone.
    """
    key = getattr(task, "shared_batch_key", None)
    return key() if isinstance(task, SampleTask) and key is not None else None


def shared_groups(tasks: list[Task]) -> list[list[Task]]:
    """Consecutive tasks with the same non-``None`` :func:`shared_batch_key` form one group."""
    groups: list[list[Task]] = []
    for task in tasks:
        key = shared_batch_key(task)
        if groups and key is not None and shared_batch_key(groups[-1][0]) == key:
            groups[-1].append(task)
        else:
            groups.append([task])
    return groups
