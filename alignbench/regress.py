"""Regression checks: fresh results against a published leaderboard (its JSON form).

Every measured cell of the baseline is checked per (model, task, metric):

* ``ok``: within ``tolerance`` (absolute) of the published value;
* ``drop``: lower by more than ``tolerance`` (failure);
* ``improved``: higher by more than ``tolerance`` (reported, not a failure: republish the table);
* ``missing``: no fresh result, or the metric is absent (failure);
* ``mismatch``: a fresh result exists but was computed differently (other checkpoint or model
  config, task version, protocol, dataset identity or sample count; failure);
* ``new``: a fresh result or metric the baseline does not have (information only).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from rich.table import Table

from .leaderboard.results import Result, ResultFileError, finite_or_none, signature_differences, signature_id
from .leaderboard.table import Leaderboard, Row, TaskColumn

DEFAULT_TOLERANCE = 0.005
FAILURES = frozenset({"drop", "missing", "mismatch"})
_STYLES = {"ok": "green", "improved": "yellow", "new": "cyan", "drop": "bold red", "missing": "bold red", "mismatch": "bold red"}


@dataclass(frozen=True)
class Check:
    """The outcome for one (model, map method, task column, metric); ``metric`` is ``None``
    when the whole result is missing or mismatched."""

    model: str
    map_method: str | None
    column: str
    metric: str | None
    baseline: float | None
    fresh: float | None
    status: str
    detail: str = ""

    @property
    def delta(self) -> float | None:
        return None if self.baseline is None or self.fresh is None else self.fresh - self.baseline

    @property
    def failed(self) -> bool:
        return self.status in FAILURES


def _metric_status(baseline: float | None, fresh: float | None, tolerance: float) -> str:
    if baseline is None:
        return "ok" if fresh is None else "new"
    if fresh is None:
        return "missing"
    delta = fresh - baseline
    return "drop" if delta < -tolerance else "improved" if delta > tolerance else "ok"


def _weights_differ(row: Row, result: Result) -> str | None:
    ident = result.identity
    if ident.checkpoint_sha256 != row.checkpoint_sha256:
        return f"checkpoint sha256 {str(ident.checkpoint_sha256)[:12]} (published: {str(row.checkpoint_sha256)[:12]})"
    if ident.config_sha256 != row.config_sha256:
        return f"model config sha256 {str(ident.config_sha256)[:12]} (published: {str(row.config_sha256)[:12]})"
    return None


def _check_cell(row: Row, col: TaskColumn, candidates: list[Result], tolerance: float, used: set[int]) -> list[Check]:
    """Checks of one baseline cell against the fresh results of the same model and task
    (``used`` collects the results that were looked at)."""
    def whole(status: str, detail: str) -> list[Check]:
        return [Check(row.model, row.map_method, col.key, None, None, None, status, detail)]

    if not candidates:
        return whole("missing", f"no fresh result for task {col.task}")
    for r in candidates:
        used.add(id(r))
    same_method = [r for r in candidates if r.map_label in (row.map_method, None)]
    if not same_method:
        return whole("mismatch", f"{candidates[0].label}: map method {candidates[0].map_label} (published: {row.map_method})")
    candidates = same_method
    weight_issues = {id(r): _weights_differ(row, r) for r in candidates}
    same_weights = [r for r in candidates if weight_issues[id(r)] is None]
    if not same_weights:
        return whole("mismatch", f"{candidates[0].label}: {weight_issues[id(candidates[0])]}")
    matching = [r for r in same_weights if signature_id(r.signature) == signature_id(col.signature)]
    if not matching:
        r = same_weights[0]
        return whole("mismatch", f"{r.label}: " + "; ".join(signature_differences(r.signature, col.signature)) + " (published differs)")
    if len(matching) > 1:
        raise ResultFileError(f"two fresh results for model {row.model!r}, task column {col.key!r}: {matching[0].label} and {matching[1].label}")
    fresh = matching[0]
    published = row.scores[col.key]
    checks = []
    for m in [*published, *(m for m in fresh.metrics if m not in published)]:
        value = finite_or_none(fresh.metrics.get(m))  # NaN counts as missing, never as within tolerance
        checks.append(Check(row.model, row.map_method, col.key, m, published.get(m), value,
                            _metric_status(published.get(m), value, tolerance), fresh.label))
    return checks


def compare(baseline: Leaderboard, results: list[Result], tolerance: float = DEFAULT_TOLERANCE) -> list[Check]:
    """Check every measured cell of ``baseline`` against ``results`` (see the module docstring)."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    checks: list[Check] = []
    used: set[int] = set()
    for row in baseline.rows:
        for col in baseline.columns:
            if col.key not in row.scores:
                continue
            candidates = [r for r in results if r.model == row.model and r.task == col.task]
            checks += _check_cell(row, col, candidates, tolerance, used)
    for r in results:
        if id(r) not in used:
            checks.append(Check(r.model, r.map_label, r.task, None, None, None, "new", f"{r.label}: not in the published table"))
    return checks


def _num(v: float | None, signed: bool = False) -> str:
    return "" if v is None else f"{v:+.4f}" if signed else f"{v:.4f}"


def checks_table(checks: list[Check], tolerance: float, title: str) -> Table:
    """A rich table of the checks (failures first, then improvements, new and ok); the map
    method column is left out when every check has the same one."""
    order = {"drop": 0, "mismatch": 1, "missing": 2, "improved": 3, "new": 4, "ok": 5}
    show_method = len({c.map_method for c in checks}) > 1
    table = Table(title=f"{title} (tolerance {tolerance:g})")
    for name in ("status", "model", *(["map method"] if show_method else []), "task", "metric", "published", "fresh", "delta", "detail"):
        table.add_column(name, overflow="fold", no_wrap=name in ("status", "published", "fresh", "delta"))
    for c in sorted(checks, key=lambda c: (order[c.status], c.model, c.map_method or "", c.column, c.metric or "")):
        method = [c.map_method or "—"] if show_method else []
        table.add_row(f"[{_STYLES[c.status]}]{c.status}[/]", c.model, *method, c.column, c.metric or "—",
                      _num(c.baseline), _num(c.fresh), _num(c.delta, signed=True), "" if c.status == "ok" else c.detail)
    return table


def summary(checks: list[Check]) -> dict[str, int]:
    """How many checks ended in each status."""
    return dict(Counter(c.status for c in checks))
