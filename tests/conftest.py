"""Shared test setup: offline hub, the parity fixture, small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tiny models on a shared 2-core machine: one intra-op thread is several times faster.
torch.set_num_threads(1)

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "align_bench_parity"


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    """The parity fixture produced by the original code (../shared beside the checkout)."""
    if not (FIXTURE / "expected" / "scores.json").exists():
        pytest.skip(f"parity fixture not found at {FIXTURE}")
    return FIXTURE


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep alignbench's own cache (checksums, downloads) inside the test's temp folder."""
    monkeypatch.setenv("ALIGNBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "alignbench-cache"))
