"""`alignbench show`: one sample's maps over its image (issue 6, item 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_leaderboard import MODEL, synth_results

import alignbench
from alignbench.cli_reports import show_cmd
from alignbench.show import sample_panels, show

TASK = "align-bench-synth-local"
SAMPLE = 2


@pytest.fixture(scope="module")
def model() -> alignbench.AlignmentModel:
    return alignbench.load_model(MODEL)


@pytest.fixture(scope="module")
def task():
    return alignbench.load_task(TASK)


def _record(root: Path, task: str, index: int) -> dict:
    lines = (root / MODEL / f"{task}.samples.jsonl").read_text().splitlines()
    return json.loads(lines[index])


def test_panel_scores_are_the_benchmark_scores(model, task, tmp_path_factory):
    """The scores printed on the panels are those `evaluate` recorded for the same sample."""
    root = synth_results(tmp_path_factory)
    sample, panels = sample_panels(model, task, SAMPLE)
    local, glob = _record(root, TASK, SAMPLE), _record(root, "align-bench-synth-global", SAMPLE)
    assert sample.sample_id == local["sample_id"] == glob["sample_id"]
    assert panels[0].box_score == pytest.approx(glob["box_score"], abs=1e-6)
    assert panels[0].pixel_score == pytest.approx(glob["pixel_score"], abs=1e-6)
    assert [p.title for p in panels[1:]] == [f"“{ph.text}”" for ph in sample.phrases]
    for panel, rec in zip(panels[1:], local["phrases"], strict=True):
        assert panel.box_score == pytest.approx(rec["box_score"], abs=1e-6)
        assert panel.pixel_score == pytest.approx(rec["pixel_score"], abs=1e-6)
        assert panel.grid_map.shape == model.grid_size


def test_show_writes_a_png(model, task, tmp_path):
    by_index = show(model, task, SAMPLE, tmp_path / "by-index.png")
    assert by_index.read_bytes().startswith(b"\x89PNG") and by_index.stat().st_size > 10_000
    by_id = show(model, task, task.sample_ids()[SAMPLE], tmp_path / "by-id.png")
    assert by_id.stat().st_size > 10_000


def test_bad_samples_are_named(model, task, tmp_path):
    with pytest.raises(ValueError, match="has 200 samples; sample index 200 is out of range"):
        show(model, task, 200, tmp_path / "x.png")
    with pytest.raises(ValueError, match="no sample with id 'nope'"):
        show(model, task, "nope", tmp_path / "x.png")


def test_cli(tmp_path):
    out = tmp_path / "map.png"
    res = CliRunner().invoke(show_cmd, ["--model", MODEL, "--task", "align-bench-synth-global", "--sample", "1", "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_bytes().startswith(b"\x89PNG")
