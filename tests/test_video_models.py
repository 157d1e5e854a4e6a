"""Frame-aware models: METER's flexible video mode and CLIP's frame pooling, on tiny models."""

from __future__ import annotations

import pytest
import torch

import alignbench
from alignbench.models.base import CapabilityError, MapMethod
from alignbench.models.meter.modeling import TEMPORAL_EMBED_KEY, frame_attention_mask

CAPTIONS = ["a red circle to the left of a blue square.", "two green stars"]


@pytest.fixture(scope="module")
def meter():
    return alignbench.load_model("meter-tiny-random")


@pytest.fixture(scope="module")
def clip():
    return alignbench.load_model("clip-tiny-random")


def _clips(model, b: int, t: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, 3, model.image_size, model.image_size, generator=g)


def test_frame_attention_mask():
    allowed = ~frame_attention_mask(2, 3)  # tokens: [CLS0, p, p, CLS1, p, p]
    expected = torch.tensor([
        [1, 1, 1, 1, 1, 1],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 1, 1],
        [0, 0, 0, 1, 1, 1],
        [0, 0, 0, 1, 1, 1],
    ], dtype=torch.bool)
    assert torch.equal(allowed, expected)


def test_meter_one_frame_clip_equals_the_image_path(meter):
    px, text, method = _clips(meter, 2, 1)[:, 0], meter.tokenize(CAPTIONS), MapMethod()
    clips = px[:, None]
    maps = meter.text_image_maps(clips, text, method)
    assert maps.shape == (2, text.input_ids.shape[1], 1, *meter.grid_size)
    assert torch.equal(maps[:, :, 0], meter.text_image_maps(px, text, method))
    assert torch.equal(meter.embed_images(clips), meter.embed_images(px))
    assert torch.equal(meter.match_scores(clips, text), meter.match_scores(px, text))


def test_meter_maps_follow_the_frames(meter):
    """With no temporal embedding the video mode is frame-permutation equivariant: the maps'
    frame axis (dim 2) moves with the frames, and pooled outputs do not change."""
    clips, text = _clips(meter, 2, 4), meter.tokenize(CAPTIONS)
    order = torch.tensor([2, 0, 3, 1])
    maps = meter.text_image_maps(clips, text, MapMethod())
    assert maps.shape == (2, text.input_ids.shape[1], 4, *meter.grid_size)
    assert (maps[text.attention_mask == 0] == 0).all()
    torch.testing.assert_close(meter.text_image_maps(clips[:, order], text, MapMethod()), maps[:, :, order], atol=1e-5, rtol=0)
    torch.testing.assert_close(meter.match_scores(clips[:, order], text), meter.match_scores(clips, text), atol=1e-5, rtol=0)
    # frames interact: a frame's maps differ from the same frame read as an image
    assert not torch.allclose(maps[:, :, 0], meter.text_image_maps(clips[:, 0], text, MapMethod()), atol=1e-4)


def test_clip_per_frame_maps_and_mean_pooling(clip):
    clips, text = _clips(clip, 2, 3), clip.tokenize(CAPTIONS)
    method = MapMethod("patch-similarity")
    maps = clip.text_image_maps(clips, text, method)
    assert maps.shape == (2, text.input_ids.shape[1], 3, *clip.grid_size)
    for t in range(3):
        torch.testing.assert_close(maps[:, :, t], clip.text_image_maps(clips[:, t], text, method), atol=1e-6, rtol=0)
    frames = torch.nn.functional.normalize(torch.stack([clip.embed_images(clips[:, t]) for t in range(3)], 1), dim=-1)
    torch.testing.assert_close(clip.embed_images(clips), frames.mean(1), atol=1e-6, rtol=0)
    assert clip.describe()["frame_pooling"] == "mean"


def _save(model, path, extra=None):
    torch.save({"state_dict": {**model.model.state_dict(), **(extra or {})}}, path)
    return path


def test_temporal_embedding_zero_for_image_checkpoints(meter, tmp_path):
    assert meter.describe()["temporal_embedding"] == "zero-init (random model, no checkpoint)"
    config = {**alignbench.MODELS.get("meter-tiny-random").config, "temporal_frames": 8}
    video = alignbench.load_model("meter-tiny-random", checkpoint=_save(meter, tmp_path / "image.ckpt"), model_config=config)
    assert video.describe()["temporal_embedding"] == "zero-init (image checkpoint)"
    assert TEMPORAL_EMBED_KEY in video.load_info["missing_keys"]
    embed = video.model.vision_transformer.visual.temporal_embed
    assert embed.shape == (1, 8, 64) and not embed.any()
    px, text = _clips(meter, 2, 1), meter.tokenize(CAPTIONS)
    assert torch.equal(video.text_image_maps(px, text, MapMethod()), meter.text_image_maps(px, text, MapMethod()))


def test_checkpoint_temporal_embedding_is_loaded_and_used(meter, tmp_path):
    temporal = torch.randn(1, 6, 64, generator=torch.Generator().manual_seed(1))
    video = alignbench.load_model("meter-tiny-random", checkpoint=_save(meter, tmp_path / "video.ckpt", {TEMPORAL_EMBED_KEY: temporal}))
    assert video.describe()["temporal_embedding"] == "loaded (6 frames)" and video.model.config.temporal_frames == 6
    assert torch.equal(video.model.vision_transformer.visual.temporal_embed, temporal)
    px, text = _clips(meter, 1, 1), meter.tokenize(CAPTIONS[:1])
    assert not torch.allclose(video.text_image_maps(px, text, MapMethod()), meter.text_image_maps(px, text, MapMethod()))
    with pytest.raises(ValueError, match="a clip of 7 frames exceeds the 6 frames of the temporal embedding"):
        video.embed_images(_clips(meter, 1, 7))


def test_models_without_video_get_the_capability_error():
    vilt = alignbench.load_model("vilt-tiny-random")
    assert "video" not in vilt.capabilities
    with pytest.raises(CapabilityError, match=r"model 'vilt-tiny-random' cannot run task 'align-bench-synth-video-global' because it needs video"):
        alignbench.evaluate(vilt, alignbench.load_tasks(["align-bench-synth-video"]), model_name="vilt-tiny-random")
