"""Accessors shared by data sources that keep their ids, fingerprint and description."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any


def combined_fingerprint(content: str, description: dict[str, Any]) -> str:
    """sha256 of a content fingerprint together with the source's description."""
    return hashlib.sha256((content + json.dumps(description, sort_keys=True, default=str)).encode()).hexdigest()


class IndexedSource:
    """Mixin for sources that set ``_ids``, ``_fingerprint`` and ``_description`` and define ``__len__``."""

    _ids: Sequence[str]
    _fingerprint: str
    _description: dict[str, Any]

    @property
    def sample_ids(self) -> Sequence[str]:
        """Stable sample ids, in dataset order."""
        return self._ids

    @property
    def fingerprint(self) -> str:
        """Identifies the exact data scored (recorded in results)."""
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        """Provenance of the source for result files."""
        return {**self._description, "n": len(self)}  # type: ignore[arg-type]
