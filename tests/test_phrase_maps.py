"""How the local-local probe makes phrase maps: dual encoders encode each phrase on its own,
fusion models sum the phrase's token rows; results record which."""

from __future__ import annotations

import json

import pytest
import torch

import alignbench
from alignbench.models.base import CapabilityError, MapMethod
from alignbench.scoring.metrics import phrase_maps
from alignbench.tasks.base import RunOptions

METHODS = ("patch-similarity", "relevancy")


@pytest.fixture(scope="module")
def clip():
    return alignbench.load_model("clip-tiny-random")


@pytest.fixture(scope="module")
def meter():
    return alignbench.load_model("meter-tiny-random")


@pytest.fixture(scope="module")
def local():
    return alignbench.load_task("align-bench-synth-local")


def _batch(task, model, n: int = 2):
    dataset = task.torch_dataset(model, list(range(n)))
    return task.collate_fn(model)([dataset[k] for k in range(n)])


@pytest.mark.parametrize("method", METHODS)
def test_clip_phrase_map_is_the_phrase_encoded_as_a_caption(clip, local, method):
    batch = _batch(local, clip)
    opts = RunOptions(map_method=method)
    with torch.inference_mode():
        probe = local.phrase_maps(clip, batch, opts)
        tokens = local.token_maps(clip, batch, opts)
    multi = [p for p, (_, _, text) in enumerate(batch.phrase_labels) if len(text.split()) > 2]
    assert multi, "the batch has phrases of three words or more"
    for p in multi:
        b, _, text = batch.phrase_labels[p]
        with torch.inference_mode():  # the phrase as the whole caption of a one-sample batch: its global row
            alone = clip.text_image_maps(batch.pixel_values[b : b + 1], clip.tokenize([text]), MapMethod(method))[0, 0]
        torch.testing.assert_close(probe[p], alone, atol=1e-6, rtol=0)
        word_sum = phrase_maps(tokens, batch.phrase_sample[p : p + 1], batch.phrase_weights[p : p + 1])[0]
        assert not torch.allclose(probe[p] / probe[p].sum(), word_sum / word_sum.sum(), atol=1e-4)


def test_clip_video_phrase_maps_follow_the_frames(clip):
    clips = torch.randn(2, 3, 3, clip.image_size, clip.image_size, generator=torch.Generator().manual_seed(0))
    phrases = ["the small red circle", "a dog", "the small red circle"]
    with torch.inference_mode():
        maps = clip.phrase_image_maps(clips, torch.tensor([1, 0, 0]), phrases, MapMethod("patch-similarity"))
        assert maps.shape == (3, 3, *clip.grid_size)
        for p, b in enumerate([1, 0, 0]):
            frames = clip.text_image_maps(clips[b], clip.tokenize([phrases[p]] * 3), MapMethod("patch-similarity"))[:, 0]
            torch.testing.assert_close(maps[p], frames, atol=1e-6, rtol=0)


def test_phrase_image_maps_errors(clip, meter):
    px = torch.zeros(1, 3, clip.image_size, clip.image_size)
    with pytest.raises(ValueError, match="one sample index per phrase, got \\(1,\\) for 2 phrases"):
        clip.phrase_image_maps(px, torch.tensor([0]), ["a dog", "a cat"], MapMethod("patch-similarity"))
    with pytest.raises(CapabilityError, match="no map method 'attention'"):
        clip.phrase_image_maps(px, torch.tensor([0]), ["a dog"], MapMethod("attention"))
    assert not meter.standalone_phrase_maps
    with pytest.raises(CapabilityError, match="does not encode phrases on their own"):
        meter.phrase_image_maps(px, torch.tensor([0]), ["a dog"], MapMethod())


def test_fusion_phrase_map_sums_token_rows(meter, local):
    batch = _batch(local, meter)
    opts = RunOptions(map_method="attention")
    with torch.inference_mode():
        tokens = local.token_maps(meter, batch, opts)
        probe = local.phrase_maps(meter, batch, opts)
    assert torch.equal(probe, phrase_maps(tokens, batch.phrase_sample, batch.phrase_weights))


@pytest.mark.parametrize(("fixture", "recorded"), [("clip", "phrase encoded alone"), ("meter", "sum of phrase token rows")])
def test_result_records_how_phrase_maps_were_made(fixture, recorded, request, tmp_path):
    model, name = request.getfixturevalue(fixture), f"{fixture}-tiny-random"
    tasks = alignbench.load_tasks(["align-bench-synth-local", "align-bench-synth-global"])
    results = alignbench.evaluate(model, tasks, model_name=name, output_dir=tmp_path, options=RunOptions(limit=2, quiet=True))
    by_task = {r["task"]: r for r in results}
    local, glob = by_task["align-bench-synth-local"], by_task["align-bench-synth-global"]
    assert local["map_method"]["phrase_maps"] == recorded and local["counts"]["phrases_scored"] > 0
    assert "phrase_maps" not in glob["map_method"]
    run_key = json.loads((tmp_path / name / "align-bench-synth-local.run.json").read_text())
    assert run_key["map_method"] == local["map_method"]  # a resumed run never mixes the two ways
