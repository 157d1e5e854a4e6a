"""Building a leaderboard from result files: columns per task cohort, rows per model and map method.

Results of one task share a column only when everything that can move a number agrees: task
version, protocol, dataset identity (source, hub id, revision, split, fingerprint) and the
number of samples. Per task the largest group of complete runs is the task's column; every
other group (a partial ``--limit`` run, another protocol, another dataset revision) gets its own
column whose name carries a flag, is left out of the average, and is explained in the notes.

A row is one model (its weights: name, checkpoint and config sha256) with one map method.
Results of tasks that use no maps (``map_method: null``) belong to every row of their model.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from ..__about__ import __version__
from .reported import ReportedRow
from .results import ModelIdentity, Result, ResultFileError, finite_or_none, signature_differences, signature_id

FORMAT = "alignbench-leaderboard"
FORMAT_VERSION = 1


@dataclass
class TaskColumn:
    """The metric columns of one task cohort; ``flag`` is ``None`` for the task's main cohort."""

    key: str
    task: str
    flag: str | None
    main_metric: str
    metrics: list[str]
    signature: dict[str, Any]


@dataclass
class Row:
    """One measured row: a model's weights with one map method (``None``: no map tasks only)."""

    model: str
    map_method: str | None
    family: str | None
    parameters: int | None
    checkpoint_sha256: str | None
    config_sha256: str | None
    scores: dict[str, dict[str, float | None]] = field(default_factory=dict)
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)
    average: float | None = None
    rank: int | None = None

    @property
    def label(self) -> str:
        return self.model if self.map_method is None else f"{self.model} [{self.map_method}]"


@dataclass
class Leaderboard:
    """A measured table plus notes and a separate section of rows reported by papers."""

    title: str
    columns: list[TaskColumn]
    rows: list[Row]
    notes: list[str]
    reported: list[ReportedRow] = field(default_factory=list)
    generated: dict[str, Any] = field(default_factory=dict)

    @property
    def main_columns(self) -> list[TaskColumn]:
        """The unflagged task columns whose main metric enters the average."""
        return [c for c in self.columns if c.flag is None]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the published table and the baseline of ``alignbench regress``)."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "title": self.title,
            "generated": self.generated,
            "columns": [vars(c) for c in self.columns],
            "rows": [vars(r) for r in self.rows],
            "notes": self.notes,
            "reported": [vars(r) for r in self.reported],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "leaderboard") -> "Leaderboard":
        """Read the JSON form back; ``source`` names the file in errors."""
        if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{source}: not an alignbench leaderboard (format {FORMAT!r} version {FORMAT_VERSION})")
        try:
            return cls(
                title=data["title"],
                columns=[TaskColumn(**c) for c in data["columns"]],
                rows=[Row(**r) for r in data["rows"]],
                notes=list(data["notes"]),
                reported=[ReportedRow(**r) for r in data.get("reported", [])],
                generated=data.get("generated", {}),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"{source}: malformed leaderboard: {e}") from None


def _task_columns(task: str, results: list[Result]) -> dict[str, TaskColumn]:
    """Columns of one task, keyed by cohort signature id."""
    groups: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        groups[signature_id(r.signature)].append(r)
    order = sorted(groups, key=lambda sid: (groups[sid][0].signature["partial"], -len(groups[sid]), sid))
    ref = groups[order[0]][0].signature
    columns: dict[str, TaskColumn] = {}
    for sid in order:
        members = groups[sid]
        sig = members[0].signature
        diffs = signature_differences(sig, ref, samples=False) + ([f"partial {sig['n_samples']} of {sig['n_samples_total']}"] if sig["partial"] else [])
        flag = "; ".join(diffs) if diffs else (None if sid == order[0] else f"cohort {sid}")
        if flag is not None and any(c.flag == flag for c in columns.values()):
            flag = f"{flag}; cohort {sid}"
        main = members[0].main_metric
        metrics = sorted({m for r in members for m in r.metrics}, key=lambda m: (m != main, m))
        key = task if flag is None else f"{task} [{flag}]"
        columns[sid] = TaskColumn(key, task, flag, main, metrics, sig)
    return columns


def _rows(results: list[Result], column_of: dict[int, TaskColumn]) -> list[Row]:
    """Rows per (model weights, map method); a second result for the same cell is an error."""
    by_identity: dict[ModelIdentity, list[Result]] = defaultdict(list)
    for r in results:
        by_identity[r.identity].append(r)
    rows = []
    for identity, members in by_identity.items():
        labels = sorted({r.map_label for r in members if r.map_label is not None}) or [None]
        info = members[0].data["model_info"]
        for label in labels:
            row = Row(identity.model, label, info.get("family"), info.get("parameters"), identity.checkpoint_sha256, identity.config_sha256)
            seen: dict[str, Result] = {}
            for r in members:
                if r.map_label not in (label, None):
                    continue
                col = column_of[id(r)]
                if col.key in seen:
                    raise ResultFileError(
                        f"two results for model {identity.model!r}, task column {col.key!r}: {seen[col.key].label} and {r.label}; "
                        "pass only one of them"
                    )
                seen[col.key] = r
                row.scores[col.key] = {m: finite_or_none(r.metrics.get(m)) for m in col.metrics}
                row.provenance[col.key] = r.provenance
            rows.append(row)
    return rows


def _rank(rows: list[Row], columns: list[TaskColumn]) -> tuple[list[Row], list[str]]:
    """Average the main scores with pandas, rank rows (ties share a rank) and sort them."""
    main = [c for c in columns if c.flag is None]
    scores = pd.DataFrame(
        [[(r.scores.get(c.key) or {}).get(c.main_metric) for c in main] for r in rows],
        columns=[c.key for c in main],
        dtype=float,
    )
    average = scores.mean(axis=1, skipna=False) if main else pd.Series(math.nan, index=scores.index)
    rank = average.rank(ascending=False, method="min")
    for i, r in enumerate(rows):
        r.average = finite_or_none(average.iloc[i])
        r.rank = None if math.isnan(rank.iloc[i]) else int(rank.iloc[i])
    ordered = sorted(rows, key=lambda r: (r.rank is None, r.rank or 0, r.model, r.map_method or "", r.checkpoint_sha256 or "", r.config_sha256 or ""))
    unranked = [r.label for r in ordered if r.rank is None]
    notes = [f"not averaged or ranked (a main score is missing): {', '.join(unranked)}"] if unranked and main else []
    return ordered, notes


def _column_notes(columns: list[TaskColumn], results: list[Result], column_of: dict[int, TaskColumn]) -> list[str]:
    notes = []
    for col in columns:
        if col.flag is None:
            continue
        files = sorted(r.label for r in results if column_of[id(r)] is col)
        notes.append(f"`{col.key}`: kept apart from `{col.task}` ({col.flag}) and left out of the average; from {', '.join(files)}")
    return notes


def _identity_notes(rows: list[Row]) -> list[str]:
    weights: dict[str, set[tuple[str | None, str | None]]] = defaultdict(set)
    for r in rows:
        weights[r.model].add((r.checkpoint_sha256, r.config_sha256))
    return [
        f"model `{m}` appears with {len(w)} different checkpoints/configs: kept as separate rows"
        for m, w in sorted(weights.items())
        if len(w) > 1
    ]


def build_leaderboard(results: list[Result], *, title: str = "alignbench leaderboard", reported: list[ReportedRow] | None = None) -> Leaderboard:
    """The leaderboard of ``results`` (see the module docstring for how cells are grouped)."""
    by_task: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        by_task[r.task].append(r)
    column_of: dict[int, TaskColumn] = {}
    columns: list[TaskColumn] = []
    for task in sorted(by_task):
        cols = _task_columns(task, by_task[task])
        for r in by_task[task]:
            column_of[id(r)] = cols[signature_id(r.signature)]
        columns.extend(sorted(cols.values(), key=lambda c: (c.flag is not None, c.key)))
    rows, rank_notes = _rank(_rows(results, column_of), columns)
    return Leaderboard(
        title=title,
        columns=columns,
        rows=rows,
        notes=_column_notes(columns, results, column_of) + rank_notes + _identity_notes(rows),
        reported=list(reported or []),
        generated={"alignbench": __version__, "date": datetime.now(timezone.utc).isoformat(timespec="seconds")},
    )
