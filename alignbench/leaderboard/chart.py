"""A PNG bar chart of the main scores (matplotlib, Agg canvas: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .table import Leaderboard


def write_chart(lb: Leaderboard, path: str | Path) -> Path:
    """Horizontal grouped bars: one group per main task column (and the average), one bar per row."""
    columns = lb.main_columns
    groups = [f"{c.key}\n({c.main_metric})" for c in columns] + ["average"]
    fig = Figure(figsize=(8, 1.2 + 0.45 * len(groups) * max(1, len(lb.rows))), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if not columns or not lb.rows:
        ax.text(0.5, 0.5, "no main scores to plot", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        values = np.array([[(r.scores.get(c.key) or {}).get(c.main_metric) for c in columns] + [r.average] for r in lb.rows], dtype=float)
        height = 0.8 / len(lb.rows)
        y = np.arange(len(groups))
        for i, row in enumerate(lb.rows):
            bars = ax.barh(y + i * height, np.nan_to_num(values[i]), height, label=row.label)
            ax.bar_label(bars, labels=["—" if np.isnan(v) else f"{v:.3f}" for v in values[i]], padding=2, fontsize=8)
        ax.set_yticks(y + height * (len(lb.rows) - 1) / 2, groups)
        ax.invert_yaxis()
        ax.set_xlabel("score")
        ax.set_xlim(0, max(1.0, float(np.nanmax(values)) * 1.15) if np.isfinite(values).any() else 1.0)
        ax.legend(loc="lower right", fontsize=8)
    ax.set_title(lb.title)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out
