"""An on-disk cache of prepared grid masks, shared across models and runs.

Grid masks depend only on the data, the grid and the mask parameters of the protocol, so a
:class:`GridMaskCache` keys them by dataset fingerprint + grid + those parameters +
:data:`~alignbench.scoring.grid_masks.MASKS_VERSION`, and stores one small safetensors file per sample
under ``<cache>/grid_masks/<key>/``. It is a drop-in for
:func:`~alignbench.scoring.grid_masks.prepare_grid_masks` (same call signature), picklable for
DataLoader workers, and safe under concurrent workers and interrupted runs: every file is
written to a temporary name and renamed into place, so a reader sees a whole file or none.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save

from ..data.sample import GroundingSample
from ..protocol import Protocol
from .grid_masks import MASK_PARAMETERS, MASKS_VERSION, GridMasks, prepare_grid_masks

_ARRAY_FIELDS = tuple(f.name for f in fields(GridMasks) if f.name not in ("global_regions_used", "skipped_background"))


def default_cache_root() -> Path:
    """``$ALIGNBENCH_CACHE/grid_masks`` (alignbench's cache folder, see :mod:`alignbench.models.hub`)."""
    from ..models.hub import cache_dir

    return cache_dir() / "grid_masks"


def cache_key(fingerprint: str, grid: tuple[int, int], protocol: Protocol) -> dict[str, Any]:
    """Everything a prepared mask depends on (model-side protocol fields are left out)."""
    params = protocol.as_dict()
    return {
        "dataset_fingerprint": fingerprint,
        "grid": list(grid),
        "protocol": {k: params[k] for k in MASK_PARAMETERS},
        "masks_version": MASKS_VERSION,
    }


def _key_digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def _file_name(sample_id: str) -> str:
    """A collision-free file name for any sample id (ids may hold ``/`` or be long)."""
    return hashlib.sha256(sample_id.encode()).hexdigest()[:32] + ".safetensors"


def _to_arrays(masks: GridMasks) -> dict[str, np.ndarray]:
    arrays = {name: np.ascontiguousarray(getattr(masks, name)) for name in _ARRAY_FIELDS if getattr(masks, name) is not None}
    arrays["global_regions_used"] = np.asarray(masks.global_regions_used, dtype=np.int64)
    arrays["skipped_background"] = np.asarray(masks.skipped_background, dtype=np.int64).reshape(-1, 2)
    return arrays


def _from_arrays(arrays: dict[str, np.ndarray]) -> GridMasks:
    values = {name: arrays.get(name) for name in _ARRAY_FIELDS}
    return GridMasks(
        **values,
        global_regions_used=int(arrays["global_regions_used"]),
        skipped_background=[(int(p), int(r)) for p, r in arrays["skipped_background"]],
    )


class GridMaskCache:
    """A caching ``prepare_grid_masks(sample, grid, protocol)`` for one dataset.

    ``fingerprint`` must change whenever the dataset's annotations or image sizes change
    (every alignbench source's ``fingerprint`` does). ``hits`` / ``misses`` count lookups in
    this process (each DataLoader worker has its own counts).
    """

    def __init__(self, fingerprint: str, root: str | Path | None = None) -> None:
        if not fingerprint:
            raise ValueError("a dataset fingerprint is required to cache grid masks")
        self.fingerprint = fingerprint
        self.root = Path(root) if root is not None else default_cache_root()
        self.hits = 0
        self.misses = 0

    def directory(self, grid: tuple[int, int], protocol: Protocol) -> Path:
        """The folder holding this dataset's masks for ``grid`` and ``protocol``."""
        key = cache_key(self.fingerprint, grid, protocol)
        folder = self.root / _key_digest(key)
        if not (folder / "key.json").exists():
            _write_atomic(folder / "key.json", lambda f: f.write(json.dumps(key, indent=2).encode()))
        return folder

    def __call__(self, sample: GroundingSample, grid: tuple[int, int], protocol: Protocol) -> GridMasks:
        path = self.directory(tuple(grid), protocol) / _file_name(sample.sample_id)
        try:
            masks = _from_arrays(load_file(path))
            self.hits += 1
            return masks
        except FileNotFoundError:
            pass
        masks = prepare_grid_masks(sample, grid, protocol)
        _write_atomic(path, lambda f: f.write(save(_to_arrays(masks))))
        self.misses += 1
        return masks


def _write_atomic(path: Path, write: Any) -> None:
    """Write through ``write(file)`` to a temporary file beside ``path``, then rename it in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
