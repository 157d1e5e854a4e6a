"""Pre-training objectives and a small CPU training loop (``alignbench train``)."""

from .trainer import RECIPES, TrainConfig, Trainer, train

__all__ = ["RECIPES", "TrainConfig", "Trainer", "train"]
