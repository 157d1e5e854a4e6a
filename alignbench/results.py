"""Result files of one (model, task) run and their safe, resumable writing.

Layout under an output directory::

    <output>/<model>/<task>.json            final result (written atomically)
    <output>/<model>/<task>.samples.jsonl   one record per finished sample (appended, flushed)
    <output>/<model>/<task>.run.json        what the records were computed with (for resume)
    <output>/<model>/.<task>.lock           held while a run writes these files
    <output>/<model>/<task>.samples.part-<rank>.jsonl
                                            a rank's records during a distributed run

A run killed at any point leaves every finished sample on disk; a new run with the same run
key picks them up and computes only the rest. In a distributed run rank 0 holds the lock and
every rank appends to its own part file; rank 0 merges the parts into the samples file when
the run ends, and when any later run starts (whatever its number of processes).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable

SCHEMA_VERSION = 1


class RunLockedError(RuntimeError):
    """Another process is writing the same run's files."""


class RunMismatchError(RuntimeError):
    """The output already holds records of a different run."""


_HELD_LOCKS: set[int] = set()
"""File descriptors of the run locks this process holds."""


def _release_locks_in_forked_child() -> None:
    """A forked child (a DataLoader worker) must not keep its parent's run locks alive: an
    ``flock`` lock belongs to the open file, which fork shares, so a worker outliving a killed
    run would lock out the run's resume. The child's copies are pointed at ``/dev/null``."""
    if not _HELD_LOCKS:
        return
    null = os.open(os.devnull, os.O_RDONLY)
    for fd in _HELD_LOCKS:
        os.dup2(null, fd)
    os.close(null)
    _HELD_LOCKS.clear()


os.register_at_fork(after_in_child=_release_locks_in_forked_child)


def slug(name: str) -> str:
    """A file-name-safe form of a model or task name (``refcoco+`` stays readable)."""
    return re.sub(r"[^A-Za-z0-9+._-]+", "_", name).strip("_") or "_"


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=False, allow_nan=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_records(path: Path) -> list[dict]:
    """Records of a samples file; a torn last line (a run killed mid-write) is dropped."""
    if not path.exists():
        return []
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return records


class RunStore:
    """The files of one (model, task) run; use as a context manager to hold its lock."""

    def __init__(self, output_dir: Path | str, model_name: str, task_name: str) -> None:
        self.dir = Path(output_dir) / slug(model_name)
        stem = slug(task_name)
        self.result_path = self.dir / f"{stem}.json"
        self.samples_path = self.dir / f"{stem}.samples.jsonl"
        self.run_key_path = self.dir / f"{stem}.run.json"
        self._parts_glob = f"{stem}.samples.part-*.jsonl"
        self._lock_path = self.dir / f".{stem}.lock"
        self._lock_file = None
        self._samples_file = None

    def __enter__(self) -> "RunStore":
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self._lock_path, "w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            self._lock_file = None
            raise RunLockedError(
                f"another alignbench run is writing {self.result_path.parent}/{self.result_path.stem}.*; "
                "wait for it to finish or choose another --output"
            ) from None
        _HELD_LOCKS.add(self._lock_file.fileno())
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        if self._lock_file is not None:
            _HELD_LOCKS.discard(self._lock_file.fileno())
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def start(self, run_key: dict, *, resume: bool) -> dict[str, dict]:
        """Open the samples file for appending and return the records already finished.

        With ``resume`` and a matching run key the earlier records are kept; without
        ``resume`` they are discarded. Records of a different run are an error, so a result
        is never assembled from two different configurations.
        """
        old_key = json.loads(self.run_key_path.read_text()) if self.run_key_path.exists() else None
        self.merge_parts()
        records = read_records(self.samples_path)
        if resume and records and old_key != run_key:
            diff = sorted(k for k in set(run_key) | set(old_key or {}) if (old_key or {}).get(k) != run_key.get(k))
            raise RunMismatchError(
                f"{self.samples_path} holds {len(records)} records of a different run (differs in: {', '.join(diff)}); "
                "pass --no-resume to overwrite them or choose another --output"
            )
        if not resume:
            records = []
        write_json_atomic(self.run_key_path, run_key)
        self._rewrite_samples(records)
        self._samples_file = open(self.samples_path, "a", encoding="utf-8")
        return {r["sample_id"]: r for r in records}

    def _rewrite_samples(self, records: list[dict]) -> None:
        """Rewrite the samples file with only whole records (drops a torn last line)."""
        tmp = self.samples_path.with_suffix(".jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.samples_path)

    def merge_parts(self) -> None:
        """Fold the part files of a distributed run into the samples file (one record per
        sample id, the first one kept) and delete them."""
        parts = sorted(self.dir.glob(self._parts_glob))
        if not parts:
            return
        merged: dict[str, dict] = {}
        for path in [self.samples_path, *parts]:
            for r in read_records(path):
                merged.setdefault(r["sample_id"], r)
        self._rewrite_samples(list(merged.values()))
        for path in parts:
            path.unlink()

    def append_to_part(self, rank: int) -> None:
        """Send further :meth:`append` calls to rank ``rank``'s part file (distributed runs;
        ranks other than 0 call this without entering the store, whose lock rank 0 holds)."""
        self.close()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._samples_file = open(self.dir / self._parts_glob.replace("*", str(rank)), "a", encoding="utf-8")

    def close(self) -> None:
        """Close the file appends go to."""
        if self._samples_file is not None:
            self._samples_file.close()
            self._samples_file = None

    def append(self, records: Iterable[dict]) -> None:
        """Append finished records and flush them to disk."""
        assert self._samples_file is not None, "call start() or append_to_part() first"
        for r in records:
            self._samples_file.write(json.dumps(r) + "\n")
        self._samples_file.flush()
        os.fsync(self._samples_file.fileno())

    def records(self) -> list[dict]:
        """All records on disk, in file order."""
        if self._samples_file is not None:
            self._samples_file.flush()
        return read_records(self.samples_path)

    def write_result(self, result: dict) -> None:
        """Write the final result JSON atomically."""
        write_json_atomic(self.result_path, result)
