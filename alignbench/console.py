"""The rich console the command line prints to."""

from __future__ import annotations

import os
import sys

from rich.console import Console

PIPED_WIDTH = 200
"""Width of tables written to a file or a pipe, so that logs keep one row per line (a terminal
uses its own width; ``COLUMNS`` overrides both)."""


def make_console() -> Console:
    """A console as wide as the terminal, or :data:`PIPED_WIDTH` when stdout is not one."""
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(width=PIPED_WIDTH if piped else None)


console = make_console()
