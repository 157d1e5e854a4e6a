"""Video tasks: the synthetic clips, per-frame grounding, MSR-VTT retrieval from real .mp4 files, the CLI."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from video_helpers import write_clip

import alignbench
from alignbench.cli import cli
from alignbench.data.errors import DataError, DataNotFoundError
from alignbench.data.synthetic import (
    COLOURS,
    SyntheticRetrievalSource,
    SyntheticVideoGroundingSource,
    SyntheticVideoRetrievalSource,
    render_clip,
)
from alignbench.data.synthetic.captions import relation_holds, union_box
from alignbench.data.synthetic.scene import render_scene
from alignbench.tasks import RunOptions, load_task

pytest.importorskip("av")


@pytest.fixture(scope="module")
def clip_model():
    return alignbench.load_model("clip-tiny-random")


# ----------------------------------------------------------------------------- synthetic clips


@pytest.mark.parametrize("index", [0, 3, 7])
def test_clip_starts_as_its_scene_and_masks_follow_the_objects(index):
    clip, scene = render_clip(0, index), render_scene(0, index)
    assert np.array_equal(np.asarray(clip.frames[0]), np.asarray(scene.image))
    assert clip.caption == scene.caption
    assert [p.text for p in clip.frame_phrases[0]] == [p.text for p in scene.phrases]
    spec = clip.meta["caption_spec"]
    for frame, phrases in zip(clip.frames, clip.frame_phrases):
        pixels = np.asarray(frame)
        for mention, phrase in zip(spec["mentions"], phrases):
            for region in phrase.regions:
                assert (pixels[region.mask] == COLOURS[mention["colour"]]).all()
                ys, xs = np.nonzero(region.mask)
                assert region.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        if spec["relation"]:
            a, b = (union_box([r.box for r in p.regions]) for p in phrases[:2])
            assert relation_holds(spec["relation"], a, b)


def test_objects_move_and_clips_are_deterministic():
    moved = [c.meta["clip"]["boxes"][0] != c.meta["clip"]["boxes"][-1] for c in (render_clip(0, i) for i in range(10))]
    assert sum(moved) >= 8
    a, b = render_clip(0, 5, frames=[1, 6]), render_clip(0, 5, frames=[1, 6])
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a.frames, b.frames))
    assert a.meta == b.meta and a.meta["clip"]["frame_indices"] == [1, 6]


def test_video_sources_sample_frames_and_validate_them(monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # synthetic clips are rendered, never decoded
    source = SyntheticVideoGroundingSource(frames=3)
    clip = source[2]
    assert len(source) == 50 and clip.sample_id == source.sample_ids[2] and len(clip.frames) == 3
    assert clip.meta["clip"]["frame_indices"] == [0, 3, 7]
    assert source.fingerprint != SyntheticVideoGroundingSource(frames=4).fingerprint
    with pytest.raises(ValueError, match="frames must be between 1 and 8"):
        SyntheticVideoGroundingSource(frames=9)
    retrieval = SyntheticVideoRetrievalSource(frames=2)
    assert retrieval.captions == SyntheticRetrievalSource().captions[: len(retrieval.captions)]
    item = retrieval[4]
    assert item.clip_id == retrieval.image_ids[4] and len(item.frames) == 2
    assert [retrieval.text_to_image[t] for t in item.caption_ids] == [4, 4]


# ----------------------------------------------------------------------------- grounding


def test_frames_are_scored_like_images(clip_model):
    """CLIP reads frames independently, so each frame's record equals the image task's record
    for that frame: frame t's maps are matched with frame t's masks."""
    video, image = load_task("align-bench-synth-video-local"), load_task("align-bench-synth-local")
    opts = RunOptions(map_method="patch-similarity")
    items = [video.torch_dataset(clip_model, [0, 1])[k] for k in range(2)]
    with torch.inference_mode():
        records = video.score_batch(clip_model, video.collate_fn(clip_model)(items), opts)
        frames = image.score_batch(clip_model, image.collate_fn(clip_model)([f for it in items for f in it.frames]), opts)
    assert [r["sample_id"] for r in records] == video.sample_ids()[:2]
    got = [f for r in records for f in r["frames"]]
    assert [f["frame"] for f in got] == [0, 1, 2, 3] * 2
    for g, expected in zip(got, frames):
        assert g["sample_id"] == expected["sample_id"]
        assert g["box_score"] == pytest.approx(expected["box_score"], abs=1e-6)
        assert [p["box_score"] for p in g["phrases"]] == pytest.approx([p["box_score"] for p in expected["phrases"]], abs=1e-6)
    assert len({round(f["box_score"], 6) for f in got[:4]}) > 1  # the objects move, the scores change


def test_eval_cli_end_to_end(tmp_path):
    out = tmp_path / "results"
    result = CliRunner().invoke(cli, ["eval", "--model", "meter-tiny-random", "--task", "align-bench-synth-video",
                                      "--limit", "2", "--output", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    for probe in ("global", "local"):
        res = json.loads((out / "meter-tiny-random" / f"align-bench-synth-video-{probe}.json").read_text())
        assert res["n_samples"] == 2 and res["partial"] and res["counts"]["frames"] == 8
        assert res["model_info"]["temporal_embedding"].startswith("zero-init")
        records = [json.loads(line) for line in (out / "meter-tiny-random" / res["samples_file"]).read_text().splitlines()]
        assert len(records) == 2 and all(len(r["frames"]) == 4 for r in records)
        for r in records:
            assert r["box_score"] == pytest.approx(np.mean([f["box_score"] for f in r["frames"]]))
        assert res["metrics"]["box_score"] == pytest.approx(np.mean([r["box_score"] for r in records]))


# ----------------------------------------------------------------------------- MSR-VTT


def _msrvtt(root, n=4, fmt="json"):
    (root / "videos").mkdir(parents=True)
    records = []
    for i in range(n):
        write_clip(root / "videos" / f"video{7000 + i}.mp4", 6 + i, seed=i)
        records.append({"video_id": f"video{7000 + i}", "caption": f"clip number {i}", "video": f"video{7000 + i}.mp4"})
    (root / "msrvtt_test_1k.json").write_text(json.dumps(records))
    return root


def test_msrvtt_retrieval_decodes_clips_in_workers(tmp_path, clip_model):
    root = _msrvtt(tmp_path / "msrvtt")
    task = load_task("msrvtt-retrieval", data_dir=str(root), options={"frames": 3})
    res = alignbench.evaluate(clip_model, [task], model_name="clip-tiny-random", output_dir=tmp_path / "out",
                              options=RunOptions(num_workers=1, quiet=True))[0]
    assert res["counts"]["images"] == 4 and res["counts"]["captions"] == 4
    assert res["metrics"]["i2t_r10"] == res["metrics"]["t2i_r10"] == 100.0  # a gallery of 4
    assert res["dataset"]["source_frames"] == 3 and res["dataset"]["source_videos"] == 4
    samples = (tmp_path / "out" / "clip-tiny-random" / res["samples_file"]).read_text()
    assert "i2t/video7003" in samples
    assert load_task("msrvtt-retrieval", data_dir=str(root)).source.fingerprint != task.source.fingerprint


def test_msrvtt_bad_clip_is_named(tmp_path, clip_model):
    root = _msrvtt(tmp_path / "msrvtt")
    (root / "videos" / "video7001.mp4").write_bytes(b"broken" * 50)
    task = load_task("msrvtt-retrieval", data_dir=str(root))
    with pytest.raises(DataError, match=r"video7001.*cannot decode the video"):
        alignbench.evaluate(clip_model, [task], model_name="clip-tiny-random", options=RunOptions(quiet=True))


def test_msrvtt_missing_data_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(DataNotFoundError, match="friedrichor/MSR-VTT"):
        load_task("msrvtt-retrieval").source  # offline, nothing cached
    root = _msrvtt(tmp_path / "msrvtt", n=2)
    (root / "videos" / "video7001.mp4").unlink()
    with pytest.raises(DataError, match=r"1 of 2 videos are not under the dataset folder, e\.g\. 'video7001'"):
        load_task("msrvtt-retrieval", data_dir=str(root)).source
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(ImportError, match=r"alignbench\[video\]"):
        load_task("msrvtt-retrieval", data_dir=str(root)).source
