"""Report commands of the ``alignbench`` CLI: ``leaderboard``, ``regress`` and ``show``.

They are attached to the main group in :mod:`alignbench.cli`.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import click

from .console import console
from .leaderboard import FORMATS, build_leaderboard, load_reported, load_results, read_leaderboard, write_chart, write_leaderboard
from .regress import DEFAULT_TOLERANCE, checks_table, compare, summary


def model_loading_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options that say how a registered model is loaded (as in ``alignbench eval``)."""
    options = [
        click.option("--checkpoint", type=click.Path(dir_okay=False), help="Local checkpoint file instead of the registered download."),
        click.option("--model-config", type=click.Path(dir_okay=False), help="JSON architecture config (reference config keys)."),
        click.option("--tokenizer", help="Tokenizer folder or hub id instead of the registered one."),
        click.option("--image-size", type=int, help="Evaluation image size (default: the model's)."),
        click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.command("leaderboard")
@click.argument("results_dirs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--output", "outputs", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="File to write; repeat to write several formats of the same table (format from the suffix).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Format of a single --output (default: from its suffix).")
@click.option("--chart", type=click.Path(dir_okay=False), help="Also write a PNG bar chart of the main scores.")
@click.option("--reported", type=click.Path(exists=True, dir_okay=False), help="YAML of rows copied from papers (kept in their own section).")
@click.option("--title", default="alignbench leaderboard", show_default=True)
def leaderboard_cmd(results_dirs: tuple[str, ...], outputs: tuple[str, ...], fmt: str | None, chart: str | None,
                    reported: str | None, title: str) -> None:
    """Build a leaderboard from the result files under RESULTS_DIRS (searched recursively)."""
    if fmt and len(outputs) > 1:
        raise click.UsageError("--format applies to a single --output; with several, each file's suffix names its format")
    lb = build_leaderboard(load_results(list(results_dirs)), title=title, reported=load_reported(reported) if reported else None)
    for out in outputs:
        console.print(f"wrote {write_leaderboard(lb, out, fmt)}")
    if chart:
        console.print(f"wrote {write_chart(lb, chart)}")
    console.print(f"{len(lb.rows)} measured row(s), {len(lb.columns)} task column(s), {len(lb.reported)} reported row(s)")
    for note in lb.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)


@click.command("regress")
@click.option("--baseline", required=True, type=click.Path(exists=True, dir_okay=False), help="Published table (leaderboard JSON).")
@click.argument("results_dirs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--tolerance", type=click.FloatRange(min=0), default=DEFAULT_TOLERANCE, show_default=True,
              help="Largest absolute drop of a published number that still passes.")
def regress_cmd(baseline: str, results_dirs: tuple[str, ...], tolerance: float) -> None:
    """Compare fresh results in RESULTS_DIRS with a published table; exit 1 on a drop beyond
    tolerance, a missing result or a protocol/dataset/checkpoint mismatch."""
    published = read_leaderboard(baseline)
    checks = compare(published, load_results(list(results_dirs)), tolerance)
    console.print(checks_table(checks, tolerance, f"{baseline} vs {', '.join(results_dirs)}"))
    counts = summary(checks)
    console.print(", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing to compare")
    if not published.rows:
        console.print(f"[yellow]{baseline} has no measured rows yet: nothing is checked. Publish one with "
                      f"`alignbench leaderboard {' '.join(results_dirs)} --output {baseline}`.[/]")
    if counts.get("improved"):
        console.print(f"[yellow]{counts['improved']} number(s) improved beyond tolerance: if the change is intended, "
                      f"republish the table (`alignbench leaderboard {' '.join(results_dirs)} --output {baseline}`, "
                      "see leaderboards/README.md).[/]")
    if any(c.failed for c in checks):
        console.print("[bold red]regression check failed[/]")
        sys.exit(1)
    console.print("[green]regression check passed[/]")


@click.command("show")
@click.option("--model", "model_name", required=True, help="Registered model name (`alignbench list models`).")
@click.option("--task", "task_name", required=True, help="A grounding task (not a suite).")
@click.option("--sample", required=True, help="Sample index (0-based) or sample id.")
@click.option("--output", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@model_loading_options
@click.option("--data-dir", type=click.Path(), help="Local data: release layout, a saved `datasets` folder or parquet files.")
@click.option("--task-option", multiple=True, help="KEY=VALUE option for the task, e.g. protocol.head_reduction=mean.")
@click.option("--map-method", default="attention", show_default=True)
def show_cmd(model_name: str, task_name: str, sample: str, output: str, checkpoint: str | None, model_config: str | None,
             tokenizer: str | None, image_size: int | None, device: str, data_dir: str | None, task_option: tuple[str, ...],
             map_method: str) -> None:
    """Draw one sample's global and phrase maps over its image, regions outlined, scores in titles."""
    from . import api
    from .cli import _parse_task_options
    from .show import show

    task = api.load_task(task_name, data_dir=data_dir, options=_parse_task_options(task_option))
    model = api.load_model(model_name, checkpoint=checkpoint, model_config=model_config, tokenizer=tokenizer,
                           image_size=image_size, device=device)
    console.print(f"wrote {show(model, task, sample, output, map_method=map_method)}")
