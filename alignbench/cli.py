"""The ``alignbench`` command line: a thin layer over :mod:`alignbench.api`."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click
import yaml
from rich.table import Table

from . import api
from .console import console
from .tasks.base import RunOptions


def _parse_task_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` pairs (values parsed as YAML scalars); ``protocol.X=v`` sets a protocol override."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--task-option")
        parsed = yaml.safe_load(value)
        if key.startswith("protocol."):
            out.setdefault("protocol", {})[key.split(".", 1)[1]] = parsed
        else:
            out[key] = parsed
    return out


def _cell(value: Any, missing: str) -> str:
    if value is None:
        return missing
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def _table(rows: list[dict[str, Any]], columns: list[str], title: str, missing: str = "") -> Table:
    """A table of ``columns`` of ``rows``; lists are comma-separated, ``None`` is ``missing``."""
    table = Table(title=title, show_lines=False)
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*(_cell(r.get(c), missing) for c in columns))
    return table


class _CountOrAuto(click.ParamType):
    """An integer of at least ``minimum``, or ``auto``."""

    name = "INTEGER|auto"

    def __init__(self, minimum: int) -> None:
        self.minimum = minimum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int | str:
        if isinstance(value, int) or value == "auto":
            return value
        try:
            n = int(value)
        except ValueError:
            n = self.minimum - 1
        if n < self.minimum:
            self.fail(f"{value!r} is neither an integer >= {self.minimum} nor 'auto'", param, ctx)
        return n


BATCH_SIZE = _CountOrAuto(minimum=1)
NUM_WORKERS = _CountOrAuto(minimum=0)


@click.group()
@click.version_option(package_name="alignbench")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def cli(verbose: bool) -> None:
    """ALIGN-BENCH: measure text-image alignment of vision-language models."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


class _ShardType(click.ParamType):
    """``i/n``: job i (0-based) of n."""

    name = "i/n"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from .jobs import Shard

        if isinstance(value, Shard):
            return value
        try:
            return Shard.parse(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


@cli.command("eval")
@click.option("--model", "model_names", multiple=True, required=True,
              help="Registered model name (`alignbench list models`); repeat for a grid of models x tasks.")
@click.option("--checkpoint", type=click.Path(),
              help="Local checkpoint file instead of the registered download; for BLIP, ViLT, FLAVA and BridgeTower also a "
                   "save_pretrained (or downloaded hub) model folder.")
@click.option("--model-config", type=click.Path(dir_okay=False), help="JSON architecture config (reference config keys).")
@click.option("--tokenizer", help="Tokenizer folder or hub id instead of the registered one.")
@click.option("--image-size", type=int, help="Evaluation image size (default: the model's).")
@click.option("--task", "task_names", multiple=True, required=True, help="Task or suite name; repeat for several.")
@click.option("--task-option", multiple=True, help="KEY=VALUE option for the tasks, e.g. size=full or protocol.head_reduction=mean.")
@click.option("--data-dir", type=click.Path(), help="Local data: release layout, a saved `datasets` folder or parquet files.")
@click.option("--batch-size", type=BATCH_SIZE, default="8", show_default=True,
              help="Samples per batch, or `auto`: the largest that fits the device (on CPU: until throughput stops rising).")
@click.option("--num-workers", type=NUM_WORKERS, default="auto", show_default=True,
              help="DataLoader worker processes decoding images and preparing masks while the model runs; "
                   "`auto`: one per CPU core (at most 8) that a CPU model's intra-op threads leave free, "
                   "none for runs of fewer than 4 batches.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True,
              help="Autocast precision of the model forward (recorded in results; bf16/fp16 scores stay within 1e-2 of fp32).")
@click.option("--map-method", default=None, help="Map method (default: the model family's first, e.g. attention for fusion models).")
@click.option("--limit", type=int, help="Score only the first N samples (the result is marked partial).")
@click.option("--output", required=True, type=click.Path(file_okay=False), help="Folder for result files.")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Reuse finished samples of the same run in --output (a killed run computes only the rest).")
@click.option("--quiet", is_flag=True, help="No progress bar (it is also off when stderr is not a terminal).")
@click.option("--shard", type=_ShardType(), default=None,
              help="Run only job i (0-based) of n of the models x tasks grid, e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT.")
def eval_cmd(model_names: tuple[str, ...], checkpoint: str | None, model_config: str | None, tokenizer: str | None, image_size: int | None,
             task_names: tuple[str, ...], task_option: tuple[str, ...], data_dir: str | None, batch_size: int | str, num_workers: int | str,
             device: str, precision: str, map_method: str | None, limit: int | None, output: str, resume: bool, quiet: bool,
             shard: Any) -> None:
    """Evaluate models on tasks and write one result file per (model, task).

    Under ``torchrun`` the samples of every task are split over the processes (NCCL on GPUs,
    gloo on CPU) and rank 0 writes results identical to a single-process run."""
    from . import distributed
    from .jobs import plan

    if len(model_names) > 1 and any(v is not None for v in (checkpoint, model_config, tokenizer)):
        raise click.UsageError("--checkpoint, --model-config and --tokenizer apply to a single --model")
    options = _parse_task_options(task_option)
    tasks = api.load_tasks(list(task_names), data_dir=data_dir, options=options)
    device = distributed.init_from_env(device)
    try:
        for model_name, model_tasks in plan(model_names, tasks, shard):
            model = api.load_model(model_name, checkpoint=checkpoint, model_config=model_config, tokenizer=tokenizer,
                                   image_size=image_size, device=device)
            opts = RunOptions(device=device, precision=precision, batch_size=batch_size, num_workers=num_workers, limit=limit,
                              map_method=map_method, quiet=quiet, resume=resume)
            results = api.evaluate(model, model_tasks, model_name=model_name, output_dir=output, options=opts)
            if distributed.current_world().is_main:
                console.print(_results_table(model_name, results, Path(output)))
    finally:
        distributed.shutdown()


def _results_table(model_name: str, results: list[dict[str, Any]], output: Path) -> Table:
    rows = []
    for r in results:
        row = {"task": r["task"], "samples": f"{r['n_samples']}/{r['n_samples_total']}" + (" (partial)" if r["partial"] else "")}
        row.update({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in r["metrics"].items()})
        rows.append(row)
    columns = ["task", "samples", *dict.fromkeys(k for r in results for k in r["metrics"])]
    return _table(rows, columns, f"{model_name} -> {output / model_name}")


@cli.group("list")
def list_group() -> None:
    """List registered models or tasks."""


@list_group.command("models")
def list_models_cmd() -> None:
    """Registered models: family, parameters, capabilities, map methods (default first) and weights."""
    rows = [{**r, "parameters": None if r["parameters"] is None else f"{r['parameters']:,}"} for r in api.list_models()]
    console.print(_table(rows, ["name", "family", "parameters", "capabilities", "map_methods", "source"], "models", missing="?"))


@list_group.command("tasks")
def list_tasks_cmd() -> None:
    """Registered tasks and suites."""
    console.print(_table(api.list_tasks(), ["name", "probe", "size", "source", "requires"], "tasks"))


@cli.group("convert")
def convert_group() -> None:
    """Convert datasets between layouts."""


@convert_group.command("align-bench")
@click.argument("src", type=click.Path(exists=True, file_okay=False))
@click.argument("dst", type=click.Path(file_okay=False))
def convert_align_bench(src: str, dst: str) -> None:
    """Convert the release layout (SRC/images + SRC/pkls) to a `datasets` folder DST."""
    from .data.hf import convert_release_to_hf

    ds = convert_release_to_hf(Path(src), Path(dst))
    console.print(f"wrote {len(ds)} samples to {dst}")


from .cli_reports import leaderboard_cmd, regress_cmd, show_cmd  # noqa: E402
from .train.cli import train_cmd  # noqa: E402

for _command in (leaderboard_cmd, regress_cmd, show_cmd, train_cmd):
    cli.add_command(_command)


def main() -> None:
    """Console-script entry point: known errors become one clear line and exit code 2."""
    from .data.errors import DataError, DataNotFoundError
    from .models.base import CapabilityError
    from .models.hub import CheckpointNotFoundError
    from .models.checkpoint import CheckpointError
    from .registry import UnknownNameError
    from .results import RunLockedError, RunMismatchError
    from .tasks.config import TaskDefinitionError

    known = (DataError, DataNotFoundError, CapabilityError, CheckpointNotFoundError, UnknownNameError,
             RunLockedError, RunMismatchError, TaskDefinitionError, CheckpointError, FileNotFoundError, ValueError)
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except known as e:
        console.print(f"[bold red]error:[/] {e}", highlight=False)
        sys.exit(2)
