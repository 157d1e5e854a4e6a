"""Grounding task behaviour beyond parity: missing phrases, partial runs, protocol variants, errors."""

from __future__ import annotations

import json
import logging
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import alignbench
from alignbench.data.sample import GroundingSample, Phrase, Region
from alignbench.protocol import REFERENCE
from alignbench.scoring.grid_masks import prepare_grid_masks
from alignbench.scoring.metrics import pointing_hit


@pytest.fixture(scope="module")
def fixture_model(fixture_dir: Path) -> alignbench.AlignmentModel:
    return alignbench.load_model(
        "meter-base", checkpoint=fixture_dir / "checkpoint.pt", model_config=fixture_dir / "config.json", tokenizer=str(fixture_dir / "tokenizer")
    )


def _copy_data(fixture_dir: Path, dst: Path, ids: tuple[int, ...]) -> Path:
    for sub, suffix in (("images", ".jpg"), ("pkls", ".pkl")):
        (dst / sub).mkdir(parents=True)
        for i in ids:
            shutil.copyfile(fixture_dir / "data" / sub / f"{i}{suffix}", dst / sub / f"{i}{suffix}")
    return dst


def test_phrase_missing_from_caption_is_warned_left_out_and_counted(fixture_model, fixture_dir, tmp_path, caplog):
    data = _copy_data(fixture_dir, tmp_path / "data", (0, 1))
    ann = pickle.loads((data / "pkls" / "0.pkl").read_bytes())
    ann["annotation"]["purple giraffe"] = ann["annotation"]["red circle"]
    (data / "pkls" / "0.pkl").write_bytes(pickle.dumps(ann))
    task = alignbench.load_task("align-bench-local", data_dir=str(data))
    with caplog.at_level(logging.WARNING):
        (result,) = alignbench.evaluate(fixture_model, [task], model_name="m", options=alignbench.RunOptions(quiet=True))
    assert "purple giraffe" in caplog.text and "sample 0" in caplog.text
    assert result["counts"]["phrases_missing"] == 1
    assert result["counts"]["missing_phrase_examples"] == [["0", "purple giraffe"]]
    expected = json.loads((fixture_dir / "expected" / "scores.json").read_text())["local"]["per_image"]
    want = np.mean([expected[0]["mean_box_score"], expected[1]["mean_box_score"]])
    assert result["metrics"]["box_score"] == pytest.approx(want, abs=1e-5)  # the missing phrase changed nothing


def test_limit_marks_result_partial(fixture_model, fixture_dir, tmp_path):
    task = alignbench.load_task("align-bench-global", data_dir=str(fixture_dir / "data"))
    (result,) = alignbench.evaluate(fixture_model, [task], model_name="m", output_dir=tmp_path, options=alignbench.RunOptions(limit=3, quiet=True))
    assert result["partial"] is True and result["n_samples"] == 3 and result["n_samples_total"] == 10
    assert len((tmp_path / "m" / "align-bench-global.samples.jsonl").read_text().splitlines()) == 3


def test_v2_protocol_is_a_separate_task_with_different_numbers(fixture_model, fixture_dir, tmp_path):
    tasks = alignbench.load_tasks(["align-bench-global", "align-bench-global-v2"], data_dir=str(fixture_dir / "data"))
    ref, v2 = alignbench.evaluate(fixture_model, tasks, model_name="m", output_dir=tmp_path, options=alignbench.RunOptions(quiet=True))
    assert ref["protocol"]["name"] == "reference" and v2["protocol"]["name"] == "v2"
    assert (tmp_path / "m" / "align-bench-global.json").exists() and (tmp_path / "m" / "align-bench-global-v2.json").exists()
    assert abs(ref["metrics"]["pixel_score"] - v2["metrics"]["pixel_score"]) > 1e-3
    assert v2["metrics"]["pixel_score"] <= 1.0  # union masks: a share can no longer exceed 1


def test_counted_pixel_masks_and_background_filter():
    mask_a = np.zeros((20, 40), bool)
    mask_a[0:10, 0:20] = True
    mask_b = np.zeros((20, 40), bool)
    mask_b[5:15, 10:30] = True
    whole = np.ones((20, 40), bool)
    sample = GroundingSample(
        "s", Image.new("RGB", (40, 20)), "a b", (Phrase("a", (Region((0, 0, 20, 10), mask_a), Region((10, 5, 30, 15), mask_b))), Phrase("bg", (Region((0, 0, 40, 20), whole),)))
    )
    ref = prepare_grid_masks(sample, (20, 40), REFERENCE)  # identity grid: no resampling effects
    assert ref.skipped_background == [(1, 0)] and ref.global_regions_used == 2
    assert ref.global_pixel.max() == pytest.approx(2.0, abs=1e-5)  # overlap counted twice
    v2 = prepare_grid_masks(sample, (20, 40), alignbench.V2)
    assert v2.global_pixel.max() == pytest.approx(1.0, abs=1e-5)


def test_pointing_game_uses_first_argmax():
    maps = torch.zeros(2, 2, 2)
    maps[0, 1, 0] = 1.0  # peak at row 1, col 0
    maps[1] = 0.5  # all tied: the first cell wins
    hits = torch.tensor([[[False, False], [True, False]], [[True, False], [False, False]]])
    assert pointing_hit(maps, hits).tolist() == [1.0, 1.0]
    assert pointing_hit(maps, ~hits).tolist() == [0.0, 0.0]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alignbench", *args], capture_output=True, text=True, timeout=300)


def test_cli_errors_are_one_clear_line(tmp_path):
    proc = _cli("eval", "--model", "glscl-base", "--task", "align-bench-global", "--output", str(tmp_path))
    assert proc.returncode == 2
    assert "jiyatai/SCL" in proc.stdout and "--checkpoint" in proc.stdout and "Traceback" not in proc.stderr
    proc = _cli("eval", "--model", "glscl-bas", "--task", "align-bench-global", "--output", str(tmp_path))
    assert proc.returncode == 2 and "glscl-base" in proc.stdout  # suggests the close name
    proc = _cli("eval", "--model", "meter-tiny-random", "--task", "align-bench-global", "--data-dir", str(tmp_path), "--output", str(tmp_path / "o"))
    assert proc.returncode == 2 and str(tmp_path) in proc.stdout


def test_main_job_on_bundled_default(tmp_path):
    proc = _cli("eval", "--model", "meter-tiny-random", "--task", "align-bench-synth", "--limit", "12", "--batch-size", "4", "--output", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    for task in ("align-bench-synth-global", "align-bench-synth-local"):
        result = json.loads((tmp_path / "meter-tiny-random" / f"{task}.json").read_text())
        assert result["n_samples"] == 12 and 0 < result["metrics"]["box_score"] < 1
        assert result["dataset"]["source"] == "align-bench-synth" and result["dataset"]["fingerprint"]
