"""``alignbench train``: train a tiny METER-layout model on the synthetic world."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import click

from .trainer import RECIPES, TrainConfig, train


@click.command("train")
@click.option("--recipe", type=click.Choice(RECIPES), default="glscl", show_default=True, help="glscl = METER objectives + MGSC + MLTC.")
@click.option("--steps", type=int, default=TrainConfig.steps, show_default=True)
@click.option("--batch-size", type=int, default=TrainConfig.batch_size, show_default=True)
@click.option("--lr", type=float, default=TrainConfig.lr, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--data-size", type=click.Choice(["mini", "full"]), default=TrainConfig.data_size, show_default=True, help="Synthetic train-split size.")
@click.option("--base-model", default=TrainConfig.base_model, show_default=True, help="Registered METER-family model to start from.")
@click.option("--output", required=True, type=click.Path(dir_okay=False), help="Checkpoint path (a .log.jsonl of losses is written beside it).")
@click.option("--quiet", is_flag=True)
def train_cmd(output: str, quiet: bool, **options: object) -> None:
    """Train a small model with the METER or GLSCL objectives (deterministic given the seed)."""
    known = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in options.items() if k in known})
    path = train(cfg, Path(output), quiet=quiet)
    click.echo(f"wrote {path} and {path.with_suffix('.log.jsonl')}")
