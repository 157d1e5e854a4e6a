"""Progress reporting: a tqdm bar with rate and ETA, silent when not on a terminal."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm


def progress_bar(total: int, initial: int = 0, desc: str = "", quiet: bool = False) -> Any:
    """A context-managed bar; disabled with ``quiet`` or when stderr is not a TTY."""
    disable = quiet or not sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc=desc, unit="sample", disable=disable, dynamic_ncols=True)
