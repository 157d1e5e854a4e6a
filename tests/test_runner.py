"""The batched runner (issue 5): resume after SIGKILL, the output lock, batch size auto,
DataLoader workers, autocast precision, the grid-mask cache, progress and timing fields."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import alignbench
from alignbench import runner
from alignbench.data.hf import open_grounding_source
from alignbench.progress import progress_bar
from alignbench.protocol import REFERENCE, V2
from alignbench.results import RunLockedError, read_records
from alignbench.scoring import mask_cache
from alignbench.scoring.grid_masks import prepare_grid_masks
from alignbench.scoring.mask_cache import GridMaskCache

MODEL = "meter-tiny-random"
TASK = "align-bench-synth-global"
PRECISION_ATOL = 1e-2  # documented tolerance of bf16/fp16 autocast scores against fp32


@pytest.fixture(scope="module")
def tiny() -> alignbench.AlignmentModel:
    return alignbench.load_model(MODEL)


def _evaluate(model, out: Path | None, limit: int, task: str = TASK, **options) -> dict:
    opts = alignbench.RunOptions(limit=limit, quiet=True, **options)
    return alignbench.evaluate(model, alignbench.load_tasks([task]), model_name=MODEL, output_dir=out, options=opts)[0]


def _eval_command(out: Path, limit: int) -> list[str]:
    return [sys.executable, "-m", "alignbench", "eval", "--model", MODEL, "--task", TASK, "--output", str(out),
            "--batch-size", "1", "--limit", str(limit), "--quiet"]


def _wait_for_lines(path: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_bytes().splitlines()) >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"eval exited ({proc.returncode}) before writing {n} records: {proc.stderr.read()}")
        time.sleep(0.005)
    proc.kill()
    pytest.fail(f"eval wrote fewer than {n} records in {timeout} s")


def test_killed_run_resumes_only_missing_samples_and_locks_out_a_second_writer(tiny, tmp_path):
    limit = 40
    out = tmp_path / "killed"
    samples = out / MODEL / f"{TASK}.samples.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_eval_command(out, limit), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_lines(samples, 3, proc)
        with pytest.raises(RunLockedError, match="another alignbench run"):  # the subprocess holds the lock
            _evaluate(tiny, out, limit)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (out / MODEL / f"{TASK}.json").exists(), "the run finished before it was killed"
    done_before = len(read_records(samples))
    assert 3 <= done_before < limit

    # Batch 1 as in the killed run: every sample is then computed exactly as uninterrupted.
    resumed = _evaluate(tiny, out, limit, batch_size=1)
    fresh = _evaluate(tiny, tmp_path / "fresh", limit, batch_size=1)

    assert resumed["run"]["samples_resumed"] == done_before
    assert resumed["run"]["samples_computed"] == limit - done_before
    assert resumed["metrics"] == fresh["metrics"]
    assert resumed["counts"] == fresh["counts"]
    assert read_records(samples) == read_records(tmp_path / "fresh" / MODEL / f"{TASK}.samples.jsonl")


def test_batch_size_auto_picks_a_size_and_scores_equal_batch_one(tiny):
    auto = _evaluate(tiny, None, 16, task="align-bench-synth-local", batch_size="auto")
    one = _evaluate(tiny, None, 16, task="align-bench-synth-local", batch_size=1)
    used = auto["run"]["batch_size_used"]
    assert auto["run"]["batch_size"] == "auto"
    assert 1 <= used <= 16 and used & (used - 1) == 0  # a power of two, at most the sample count
    for key, value in one["metrics"].items():
        assert auto["metrics"][key] == pytest.approx(value, abs=1e-6)


def test_batch_size_auto_on_cpu_is_not_stopped_by_one_slow_measurement(tiny, monkeypatch):
    score = runner._score
    seconds_of_size = {1: 1.0, 2: 2.0, 4: 1.0, 8: 2.0, 16: 4.0}  # samples/s: 1, 1 (a hiccup), 4, 4, 4

    def timed(tasks, model, batch, opts, device):
        records, _ = score(tasks, model, batch, opts, device)
        return records, seconds_of_size[len(records[0])]

    monkeypatch.setattr(runner, "_score", timed)
    tasks = alignbench.load_tasks(["align-bench-synth-global"])
    found = runner.auto_batch_size(tasks, tiny, alignbench.RunOptions(map_method="attention"), list(range(16)))
    assert found.size == 4  # 8 and 16 are no faster: the search stopped after both
    assert len(found.records[0]) == 16


def test_dataloader_workers_give_identical_records(tiny, tmp_path):
    _evaluate(tiny, tmp_path / "w0", 12, batch_size=4, num_workers=0)
    _evaluate(tiny, tmp_path / "w2", 12, batch_size=4, num_workers=2)
    path = Path(MODEL) / f"{TASK}.samples.jsonl"
    assert read_records(tmp_path / "w2" / path) == read_records(tmp_path / "w0" / path)


def test_auto_workers_use_the_cores_that_the_forward_leaves_free(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(12)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    cpu, cuda = alignbench.RunOptions(num_workers="auto"), alignbench.RunOptions(num_workers="auto", device="cuda")
    assert [cpu.workers_for(b) for b in (1, 3, 4, 100)] == [0, 0, 8, 8]  # one thread (this module's): at most 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun: 4 processes share this node's cores
    assert cpu.workers_for(100) == 3
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 10)
    assert (cpu.workers_for(100), cuda.workers_for(100)) == (2, 8)  # a CPU forward's 10 threads keep 10 cores
    monkeypatch.setattr(torch, "get_num_threads", lambda: 12)
    assert (cpu.workers_for(100), cuda.workers_for(100)) == (0, 8)
    assert alignbench.RunOptions(num_workers=5).workers_for(1) == 5
    monkeypatch.undo()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    few = _evaluate(tiny, tmp_path / "few", 6, batch_size=2, num_workers="auto")
    many = _evaluate(tiny, tmp_path / "many", 8, batch_size=2, num_workers="auto")
    assert (few["run"]["num_workers"], few["run"]["num_workers_used"]) == ("auto", 0)
    assert (many["run"]["num_workers"], many["run"]["num_workers_used"]) == ("auto", 2)


@pytest.fixture(scope="module")
def fixture_model(fixture_dir: Path) -> alignbench.AlignmentModel:
    return alignbench.load_model("meter-base", checkpoint=fixture_dir / "checkpoint.pt",
                                 model_config=fixture_dir / "config.json", tokenizer=str(fixture_dir / "tokenizer"))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_scores_stay_within_tolerance_of_fp32(fixture_model, fixture_dir, precision):
    tasks = alignbench.load_tasks(["align-bench"], data_dir=str(fixture_dir / "data"))
    run = lambda p: alignbench.evaluate(fixture_model, tasks, options=alignbench.RunOptions(batch_size=4, precision=p, quiet=True))  # noqa: E731
    for ref, low in zip(run("fp32"), run(precision), strict=True):
        assert low["run"]["precision"] == precision
        for key in ("box_score", "pixel_score"):
            assert low["metrics"][key] == pytest.approx(ref["metrics"][key], abs=PRECISION_ATOL)


def _assert_same_masks(a, b) -> None:
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
        else:
            assert x == y, f.name


def test_mask_cache_hits_equal_fresh_masks_and_invalidate_on_grid_or_protocol(fixture_dir, tmp_path):
    source = open_grounding_source(fixture_dir / "data", hub_id="jiyatai/ALIGN-BENCH", revision="main", split="train")
    samples = [source[i] for i in range(3)]
    cache = GridMaskCache(source.fingerprint, root=tmp_path)
    for s in samples:
        _assert_same_masks(cache(s, (8, 8), REFERENCE), prepare_grid_masks(s, (8, 8), REFERENCE))
    assert (cache.misses, cache.hits) == (3, 0)

    reread = GridMaskCache(source.fingerprint, root=tmp_path)  # another run, another process
    for s in samples:
        _assert_same_masks(reread(s, (8, 8), REFERENCE), prepare_grid_masks(s, (8, 8), REFERENCE))
    assert (reread.misses, reread.hits) == (0, 3)

    reread(samples[0], (8, 8), dataclasses.replace(REFERENCE, head_reduction="mean"))  # model side: same masks
    assert reread.hits == 4
    for grid, protocol in [((10, 10), REFERENCE), ((8, 8), V2), ((8, 8), dataclasses.replace(REFERENCE, background_threshold=0.5))]:
        misses = reread.misses
        _assert_same_masks(reread(samples[0], grid, protocol), prepare_grid_masks(samples[0], grid, protocol))
        assert reread.misses == misses + 1, (grid, protocol)
    other_data = GridMaskCache("another-fingerprint", root=tmp_path)
    other_data(samples[0], (8, 8), REFERENCE)
    assert other_data.misses == 1
    assert len(list(tmp_path.iterdir())) == 5  # one folder per (dataset, grid, mask protocol)


def test_runner_with_cached_masks_reproduces_reference_scores(fixture_model, fixture_dir, tmp_path, monkeypatch):
    """A second run reads every grid mask from the cache and still gives the reference scores."""
    tasks = alignbench.load_tasks(["align-bench-global"], data_dir=str(fixture_dir / "data"))
    expected = json.loads((fixture_dir / "expected" / "scores.json").read_text())["global"]
    monkeypatch.setattr(mask_cache, "default_cache_root", lambda: tmp_path)
    written = {}
    for _ in range(2):
        result = alignbench.evaluate(fixture_model, tasks, options=alignbench.RunOptions(batch_size=3, quiet=True))[0]
        assert result["metrics"]["box_score"] == pytest.approx(expected["mean_box_score"], abs=1e-5)
        assert result["metrics"]["pixel_score"] == pytest.approx(expected["mean_pixel_score"], abs=1e-5)
        files = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.safetensors")}
        assert len(files) == 10
        assert not written or files == written  # the second run wrote nothing: all hits
        written = files


def test_progress_bar_is_silent_when_quiet_or_not_a_terminal(tiny, capsys, monkeypatch):
    alignbench.evaluate(tiny, alignbench.load_tasks([TASK]), options=alignbench.RunOptions(limit=4, batch_size=2))  # pytest's stderr is not a TTY
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with progress_bar(total=3, quiet=True) as bar:
        assert bar.disable
    with progress_bar(total=3) as bar:
        assert not bar.disable


def test_result_records_wall_time_throughput_and_forward_share(tiny, tmp_path):
    result = _evaluate(tiny, tmp_path, 8, batch_size=4)
    run = json.loads((tmp_path / MODEL / f"{TASK}.json").read_text())["run"]
    assert run == result["run"]
    assert run["samples_computed"] == 8 and run["batch_size_used"] == 4
    assert run["wall_time_s"] > 0
    assert run["samples_per_s"] == pytest.approx(8 / run["wall_time_s"], rel=0.01)
    assert 0 < run["forward_share"] <= 1


def test_probes_sharing_batches_run_one_forward_and_score_as_alone(tiny, monkeypatch):
    """Both grounding probes in one pass (``GroundingTask.shared_batch_key``)."""
    alone = [_evaluate(tiny, None, 8, task=t, batch_size=4) for t in ("align-bench-synth-global", "align-bench-synth-local")]
    calls = []
    forward = type(tiny).text_image_maps
    monkeypatch.setattr(type(tiny), "text_image_maps", lambda *a: calls.append(1) or forward(*a))
    opts = alignbench.RunOptions(limit=8, batch_size=4, quiet=True)
    shared = alignbench.evaluate(tiny, alignbench.load_tasks(["align-bench-synth"]), model_name=MODEL, options=opts)
    assert len(calls) == 2  # two batches, one forward each for both probes
    assert [r["task"] for r in shared] == [r["task"] for r in alone]
    for a, b in zip(alone, shared):
        assert a["metrics"] == b["metrics"] and a["counts"] == b["counts"]


def test_out_of_memory_halves_the_batch_size_and_loses_no_sample(tiny, tmp_path, monkeypatch):
    expected = _evaluate(tiny, None, 10, batch_size=2)
    score = runner._score

    def fits_two(tasks, model, batch, opts, device):
        records, seconds = score(tasks, model, batch, opts, device)
        if len(records[0]) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return records, seconds

    monkeypatch.setattr(runner, "_score", fits_two)
    result = _evaluate(tiny, tmp_path, 10, batch_size=8)
    assert (result["run"]["batch_size_used"], result["run"]["oom_batch_halvings"]) == (2, 2)
    assert result["n_samples"] == 10 and result["metrics"] == expected["metrics"]  # the same batches of 2
    monkeypatch.setattr(runner, "_score", lambda *a: (_ for _ in ()).throw(RuntimeError("shape mismatch")))
    with pytest.raises(RuntimeError, match="shape mismatch"):  # other errors are not retried
        _evaluate(tiny, tmp_path / "other", 4, batch_size=4)
