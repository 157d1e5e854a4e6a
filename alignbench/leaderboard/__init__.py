"""Leaderboards from result files: reading, grouping, ranking and rendering.

Typical use::

    from alignbench.leaderboard import build_leaderboard, load_results, write_leaderboard
    lb = build_leaderboard(load_results(["results/"]))
    write_leaderboard(lb, "leaderboard.html")
"""

from __future__ import annotations

import json
from pathlib import Path

from .chart import write_chart
from .render import RENDERERS, measured_frame, to_csv, to_html, to_json, to_markdown
from .reported import ReportedRow, load_reported
from .results import Result, ResultFileError, load_results, read_result
from .table import Leaderboard, Row, TaskColumn, build_leaderboard

FORMATS = tuple(RENDERERS)


def infer_format(path: str | Path) -> str:
    """The format named by a file's suffix (``.md``, ``.csv``, ``.json``, ``.html``)."""
    suffix = Path(path).suffix.lstrip(".").lower()
    fmt = {"markdown": "md", "htm": "html"}.get(suffix, suffix)
    if fmt not in RENDERERS:
        raise ValueError(f"cannot tell the leaderboard format from {path!s}; pass --format ({', '.join(FORMATS)})")
    return fmt


def write_leaderboard(lb: Leaderboard, path: str | Path, fmt: str | None = None) -> Path:
    """Render ``lb`` as ``fmt`` (default: from the suffix of ``path``) and write it."""
    out = Path(path)
    text = RENDERERS[fmt or infer_format(out)](lb)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out


def read_leaderboard(path: str | Path) -> Leaderboard:
    """Read a leaderboard's JSON form (a published table)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{p}: cannot read leaderboard JSON: {e}") from None
    return Leaderboard.from_dict(data, source=str(p))


__all__ = [
    "FORMATS",
    "Leaderboard",
    "ReportedRow",
    "Result",
    "ResultFileError",
    "Row",
    "TaskColumn",
    "build_leaderboard",
    "infer_format",
    "load_reported",
    "load_results",
    "measured_frame",
    "read_leaderboard",
    "read_result",
    "to_csv",
    "to_html",
    "to_json",
    "to_markdown",
    "write_chart",
    "write_leaderboard",
]
