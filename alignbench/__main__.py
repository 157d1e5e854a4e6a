"""``python -m alignbench`` (also what torchrun launches)."""

from .cli import main

main()
