"""What a grounding score means for one sample: its maps over the image, regions outlined.

:func:`show` draws one panel for the caption's global map and one per annotated phrase, each
map overlaid on the image, the scored regions' boxes outlined and their pixel masks contoured,
and the panel's scores (relevance mass share against boxes and masks) in its title. It runs the
task's own preprocessing and phrase location (the task's dataset and collate function), so the
maps and masks are exactly those the benchmark scores.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .api import load_model, load_task
from .data.sample import GroundingSample, Region
from .models.base import AlignmentModel, require_capabilities
from .scoring.grid_masks import is_background
from .scoring.metrics import mass_share
from .tasks.base import RunOptions, Task
from .tasks.grounding import GroundingBatch, GroundingTask

PANEL_INCHES = 3.2
COLUMNS = 4


@dataclass
class Panel:
    """One map of a sample: its grid map (``None``: phrase not found), the regions it is scored
    against (with whether the global probe skips them as background) and its scores."""

    title: str
    grid_map: np.ndarray | None
    regions: list[tuple[Region, bool]]
    box_score: float | None = None
    pixel_score: float | None = None

    @property
    def caption(self) -> str:
        if self.grid_map is None:
            return f"{self.title}: not found in the caption (not scored)"
        return f"{self.title}: box {self.box_score:.3f}" + ("" if self.pixel_score is None else f" | pixel {self.pixel_score:.3f}")


def _sample_index(task: GroundingTask, sample: int | str) -> int:
    """Index of ``sample`` (a position or a sample id) in the task's data."""
    ids = task.sample_ids()
    if isinstance(sample, int) or (isinstance(sample, str) and sample.isdigit() and sample not in ids):
        index = int(sample)
        if not 0 <= index < len(ids):
            raise ValueError(f"task {task.name!r} has {len(ids)} samples; sample index {index} is out of range")
        return index
    if sample not in ids:
        raise ValueError(f"task {task.name!r} has no sample with id {sample!r}")
    return ids.index(sample)


def _draw(ax: Axes, sample: GroundingSample, panel: Panel) -> None:
    """One panel: image, map overlay, outlined boxes (dashed: skipped as background), mask contours."""
    w, h = sample.size_wh
    ax.imshow(sample.image)
    if panel.grid_map is not None:
        peak = float(panel.grid_map.max())
        ax.imshow(panel.grid_map / peak if peak > 0 else panel.grid_map, extent=(0, w, h, 0), cmap="inferno", alpha=0.55,
                  vmin=0, vmax=1, interpolation="bilinear")
    for region, skipped in panel.regions:
        x1, y1, x2, y2 = region.box
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="cyan", linewidth=1.5,
                               linestyle="--" if skipped else "-"))
        if region.mask is not None and region.mask.any():
            ax.contour(region.mask.astype(float), levels=[0.5], colors="lime", linewidths=1.0)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_title(panel.caption, fontsize=8)
    ax.set_axis_off()


def _maps(model: AlignmentModel, task: GroundingTask, batch: GroundingBatch, map_method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The global map ``[1, gh, gw]`` and the phrase maps ``[P, gh, gw]`` of a one-sample batch,
    made as the task makes them."""
    opts = RunOptions(map_method=map_method)
    with torch.inference_mode():
        maps = task.token_maps(model, batch, opts)
        return maps[:, batch.text.global_index], task.phrase_maps(model, batch, opts, token_maps=maps)


def _shares(maps: torch.Tensor, box: torch.Tensor, pixel: torch.Tensor | None) -> list[tuple[float, float | None]]:
    """(box, pixel) relevance mass share per map; pixel is ``None`` for box-only data."""
    box_s = mass_share(maps, box).tolist()
    pixel_s = mass_share(maps, pixel).tolist() if pixel is not None else [None] * len(box_s)
    return list(zip(box_s, pixel_s))


def sample_panels(model: AlignmentModel, task: GroundingTask, sample: int | str, map_method: str = "attention") -> tuple[GroundingSample, list[Panel]]:
    """The sample and its panels: the global map first, then one per annotated phrase."""
    require_capabilities(model, model.describe().get("name") or type(model).__name__, task.name, task.requires)
    index = _sample_index(task, sample)
    source_sample = task.source[index]
    device = next(model.parameters()).device
    batch = task.collate_fn(model)([task.torch_dataset(model, [index])[0]]).to(device)
    global_map, pmaps = _maps(model, task, batch, map_method)

    hw = source_sample.size_wh[::-1]
    all_regions = [(r, is_background(r, hw, task.protocol)) for p in source_sample.phrases for r in p.regions]
    panels = [Panel("global", global_map[0].cpu().numpy(), all_regions, *_shares(global_map, batch.global_box, batch.global_pixel)[0])]
    phrase_scores = _shares(pmaps, batch.phrase_box, batch.phrase_pixel) if len(pmaps) else []
    scored = {pi: k for k, (_, pi, _) in enumerate(batch.phrase_labels)}
    for pi, phrase in enumerate(source_sample.phrases):
        regions = [(r, False) for r in phrase.regions]
        if pi in scored:
            k = scored[pi]
            panels.append(Panel(f"“{phrase.text}”", pmaps[k].cpu().numpy(), regions, *phrase_scores[k]))
        else:
            panels.append(Panel(f"“{phrase.text}”", None, regions))
    return source_sample, panels


def show(model: str | AlignmentModel, task: str | Task, sample: int | str, output: str | Path, *, map_method: str = "attention") -> Path:
    """Draw the maps of ``sample`` of grounding ``task`` to the PNG ``output``.

    ``sample`` is a 0-based index, or a sample id (a string of digits that is also a sample id
    is taken as the id). ``model`` and ``task`` are names (loaded with
    :func:`alignbench.load_model` / :func:`alignbench.load_task`) or already built objects.
    """
    model = load_model(model) if isinstance(model, str) else model
    task = load_task(task) if isinstance(task, str) else task
    if not isinstance(task, GroundingTask):
        raise ValueError(f"task {task.name!r} is not a grounding task: it has no annotated regions to show maps against")
    if task.config.task_type == "video-grounding":
        raise ValueError(f"task {task.name!r} is a video task, which show does not draw; its per-frame scores are in the run's *.samples.jsonl")
    source_sample, panels = sample_panels(model, task, sample, map_method)

    cols = min(COLUMNS, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(PANEL_INCHES * cols, PANEL_INCHES * rows + 0.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, panel in zip(axes, panels):
        _draw(ax, source_sample, panel)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    caption = textwrap.fill(source_sample.caption, width=40 * cols)
    name = model.describe().get("name") or type(model).__name__
    fig.suptitle(f"{name} | {task.name} | sample {source_sample.sample_id} ({task.protocol.name} protocol)\n{caption}", fontsize=9)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out
