"""Parity with the original ALIGN-BENCH scripts on the shared fixture (issue: core, item 6)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import alignbench
from alignbench.data.hf import open_grounding_source
from alignbench.models.base import MapMethod
from alignbench.protocol import REFERENCE
from alignbench.scoring.grid_masks import prepare_grid_masks

ATOL = 1e-5


@pytest.fixture(scope="module")
def model(fixture_dir: Path) -> alignbench.AlignmentModel:
    return alignbench.load_model(
        "meter-base",
        checkpoint=fixture_dir / "checkpoint.pt",
        model_config=fixture_dir / "config.json",
        tokenizer=str(fixture_dir / "tokenizer"),
    )


@pytest.fixture(scope="module")
def expected(fixture_dir: Path) -> dict:
    return json.loads((fixture_dir / "expected" / "scores.json").read_text())


def _run(model, fixture_dir: Path, batch_size: int, tmp_path: Path | None = None) -> dict[str, dict]:
    tasks = alignbench.load_tasks(["align-bench"], data_dir=str(fixture_dir / "data"))
    opts = alignbench.RunOptions(batch_size=batch_size, quiet=True)
    results = alignbench.evaluate(model, tasks, model_name="meter-base", output_dir=tmp_path, options=opts)
    return {r["task"]: r for r in results}, tasks


@pytest.mark.parametrize("batch_size", [1, 8])
def test_scores_match_reference(model, fixture_dir, expected, tmp_path, batch_size):
    results, _ = _run(model, fixture_dir, batch_size, tmp_path)
    g, l = results["align-bench-global"], results["align-bench-local"]
    assert g["metrics"]["box_score"] == pytest.approx(expected["global"]["mean_box_score"], abs=ATOL)
    assert g["metrics"]["pixel_score"] == pytest.approx(expected["global"]["mean_pixel_score"], abs=ATOL)
    assert l["metrics"]["box_score"] == pytest.approx(expected["local"]["mean_box_score"], abs=ATOL)
    assert l["metrics"]["pixel_score"] == pytest.approx(expected["local"]["mean_pixel_score"], abs=ATOL)

    g_records = [json.loads(x) for x in (tmp_path / "meter-base" / "align-bench-global.samples.jsonl").read_text().splitlines()]
    for rec, exp in zip(g_records, expected["global"]["per_image"], strict=True):
        assert rec["sample_id"] == str(exp["image"])
        assert rec["box_score"] == pytest.approx(exp["box_score"], abs=ATOL)
        assert rec["pixel_score"] == pytest.approx(exp["pixel_score"], abs=ATOL)
        assert rec["skipped_background"] == [list(x) for x in exp["skipped_background_boxes"]]
    l_records = [json.loads(x) for x in (tmp_path / "meter-base" / "align-bench-local.samples.jsonl").read_text().splitlines()]
    for rec, exp in zip(l_records, expected["local"]["per_image"], strict=True):
        assert rec["box_score"] == pytest.approx(exp["mean_box_score"], abs=ATOL)
        assert rec["pixel_score"] == pytest.approx(exp["mean_pixel_score"], abs=ATOL)
        assert [p["phrase"] for p in rec["phrases"]] == [p["phrase"] for p in exp["phrases"]]
        for got, want in zip(rec["phrases"], exp["phrases"]):
            assert got["box_score"] == pytest.approx(want["box_score"], abs=ATOL)
            assert got["pixel_score"] == pytest.approx(want["pixel_score"], abs=ATOL)
        assert rec["missing_phrases"] == []


def test_maps_and_masks_match_reference(model, fixture_dir):
    source = open_grounding_source(fixture_dir / "data", hub_id="jiyatai/ALIGN-BENCH", revision="main", split="train")
    transform = model.image_transform()
    for i in range(len(source)):
        sample = source[i]
        ref = np.load(fixture_dir / "expected" / f"maps_{sample.sample_id}.npz")
        masks = prepare_grid_masks(sample, model.grid_size, REFERENCE)
        np.testing.assert_allclose(masks.global_box, ref["global_mask_box_resized"], atol=ATOL)
        np.testing.assert_allclose(masks.global_pixel, ref["global_mask_pixel_resized"], atol=ATOL)
        np.testing.assert_allclose(masks.phrase_box, ref["local_mask_box_resized"], atol=ATOL)
        np.testing.assert_allclose(masks.phrase_pixel, ref["local_mask_pixel_resized"], atol=ATOL)

        text = model.tokenize([sample.caption])
        with torch.inference_mode():
            maps = model.text_image_maps(transform(sample.image)[None], text, MapMethod("attention", -1, "max"))[0]
        np.testing.assert_allclose(maps[0].numpy(), ref["global_att_map"], atol=ATOL)
        np.testing.assert_allclose(maps[1:-1].numpy(), ref["local_att_map_tokens"], atol=ATOL)


def test_cli_acceptance_command(fixture_dir, expected, tmp_path):
    """The issue's exact command line, run as a user would."""
    cmd = [
        sys.executable, "-m", "alignbench", "eval", "--model", "meter-base",
        "--model-config", str(fixture_dir / "config.json"), "--checkpoint", str(fixture_dir / "checkpoint.pt"),
        "--tokenizer", str(fixture_dir / "tokenizer"), "--data-dir", str(fixture_dir / "data"),
        "--device", "cpu", "--precision", "fp32", "--task", "align-bench-global", "--task", "align-bench-local",
        "--output", str(tmp_path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "meter-base" / "align-bench-global.json").read_text())
    assert result["metrics"]["box_score"] == pytest.approx(expected["global"]["mean_box_score"], abs=ATOL)
    assert result["n_samples"] == 10 and result["partial"] is False
    for key in ("task", "model", "n_samples", "metrics", "protocol", "dataset", "environment", "run", "model_info"):
        assert key in result
    assert result["protocol"]["pixel_mask_combine"] == "count"
    assert len(result["model_info"]["checkpoint_sha256"]) == 64
    assert result["dataset"]["fingerprint"]
    assert result["run"]["precision"] == "fp32" and result["run"]["samples_per_s"] > 0
