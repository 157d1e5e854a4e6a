"""Evaluation across processes with torch.distributed (``torchrun``; NCCL on GPUs, gloo on CPU).

Work is split in whole batches: batch ``b`` of a run's to-do list (samples in dataset order,
each identified by its stable sample id) goes to rank ``b % world_size``. Every rank therefore
forms exactly the batches a single process would, which makes the scores bit-identical to a
single-process run at the same batch size. Each rank streams its finished records to its own
part file; rank 0 merges the parts on disk (see :class:`alignbench.results.RunStore`), so no
large tensor is gathered in memory and a resumed run may use any number of processes.

The output folder must be visible to every rank (one machine, or a shared filesystem across
nodes). Without an initialised process group everything here is a single-process no-op.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the evaluation processes."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence[T], batch_size: int) -> list[T]:
        """This rank's items: batch ``b`` of ``items`` (in order) belongs to rank ``b % size``.

        Concatenated, a rank's batches are re-batched by a loader into the same batches."""
        if self.size == 1:
            return list(items)
        return [x for start in range(self.rank * batch_size, len(items), self.size * batch_size)
                for x in items[start : start + batch_size]]

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 and return its value on every rank; if it raises, every rank
        raises the same exception (so no rank waits forever for a failed rank 0)."""
        if self.size == 1:
            return fn()
        outcome: list[Any] = [None]
        if self.is_main:
            try:
                outcome[0] = (True, fn())
            except Exception as exc:  # re-raised on every rank below
                outcome[0] = (False, exc)
        dist.broadcast_object_list(outcome, src=0)
        ok, value = outcome[0]
        if not ok:
            raise value
        return value

    def gather_batches(self, local: torch.Tensor | None, n: int, batch_size: int) -> torch.Tensor:
        """The ``[n, ...]`` tensor whose batches were computed by the ranks that own them
        (:meth:`shard`); ``local`` holds this rank's rows (``None`` when it owns no batch).
        Every rank receives the whole tensor, on the CPU."""
        if self.size == 1:
            assert local is not None and local.shape[0] == n
            return local
        parts: list[Any] = [None] * self.size
        dist.all_gather_object(parts, None if local is None else local.cpu())
        offsets = [0] * self.size
        rows = []
        for b, start in enumerate(range(0, n, batch_size)):
            owner, size = b % self.size, min(batch_size, n - start)
            rows.append(parts[owner][offsets[owner] : offsets[owner] + size])
            offsets[owner] += size
        return torch.cat(rows)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over ranks (exact where one rank holds a value and the others 0)."""
        if self.size == 1:
            return tensor
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
        out = tensor.to(device)
        dist.all_reduce(out)
        return out.to(tensor.device)


def current_world() -> World:
    """The :class:`World` of the initialised default process group (one process without one)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def init_from_env(device: str) -> str:
    """Join the process group described by torchrun's environment (``WORLD_SIZE`` > 1) and
    return the device this rank should use (``cuda`` becomes ``cuda:<LOCAL_RANK>``).

    Backend: NCCL for CUDA devices, gloo otherwise. Without torchrun's variables (or with a
    group already initialised by the caller) nothing changes."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    cuda = torch.device(device).type == "cuda"
    if cuda and torch.device(device).index is None:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    if cuda:
        torch.cuda.set_device(torch.device(device))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return device


def shutdown() -> None:
    """Leave the process group if one is initialised."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
