"""The albef family (ALBEF-layout: ALBEF, TCL) on its tiny random build: tokenization offsets,
grid orientation, Grad-CAM, matching, checkpoint loading, end to end."""

from __future__ import annotations

import pickle

import pytest
import torch

import alignbench
from alignbench.models.albef import ALBEF_GRADCAM, build_albef
from alignbench.models.base import CapabilityError, MapMethod
from alignbench.models.factory import MODELS, resolve_tokenizer
from alignbench.models.meter.checkpoint import CheckpointError
from alignbench.scoring.phrases import locate_phrase, merge_words

CAPTION = "A Red triangle, left of the photobombing dog."
OTHERS = ["two cats", "a small green square above a large yellow circle near the brown dog on the left"]
ATTENTION, GRADCAM = MapMethod("attention"), MapMethod("gradcam", layer=0, head_reduction="mean")


@pytest.fixture(scope="module")
def spec():
    return MODELS.get("albef-tiny-random")


@pytest.fixture(scope="module")
def model():
    return alignbench.load_model("albef-tiny-random")


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def _build(spec, **kw):
    return build_albef(spec.config, tokenizer=resolve_tokenizer(spec.tokenizer), **{"checkpoint": None, **kw})


@pytest.mark.parametrize("phrase", ["red triangle", "photobombing dog", "dog", "left of the"])
def test_phrases_located_by_offsets(model, phrase: str) -> None:
    batch = model.tokenize([CAPTION])
    positions = [t for t in range(batch.input_ids.shape[1]) if not batch.special[0, t]]
    assert len(positions) > len(CAPTION.split())  # WordPiece splits some words
    words = merge_words(CAPTION, [tuple(batch.offsets[0, t].tolist()) for t in positions], positions, (".", ","))
    found = locate_phrase(words, phrase)
    assert found is not None
    start, end = int(batch.offsets[0, min(found), 0]), int(batch.offsets[0, max(found), 1])
    assert CAPTION[start:end].lower() == phrase


def test_map_shapes_and_padding_rows(model, pixels) -> None:
    batch = model.tokenize([CAPTION, OTHERS[0]])
    with torch.inference_mode():
        maps = model.text_image_maps(pixels[:2], batch, ATTENTION)
    assert maps.shape == (2, batch.input_ids.shape[1], *model.grid_size)
    n = int(batch.attention_mask[1].sum())
    assert maps[1, n:].abs().sum() == 0
    mass = maps[0].sum(dim=(-2, -1))  # softmax over 1 + N keys with the image-CLS column dropped
    assert (mass > 0).all() and (mass < 1).all()


def test_image_tokens_are_row_major(model) -> None:
    """Changing the pixels of grid cell (r, c) changes exactly patch token r * gw + c."""
    gh, gw = model.grid_size
    p = model.image_size // gw
    r, c = 2, 5
    captured = []
    handle = model.model.visual_encoder.patch_embed.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        x = torch.zeros(1, 3, model.image_size, model.image_size)
        y = x.clone()
        y[..., r * p : (r + 1) * p, c * p : (c + 1) * p] = 1.0
        with torch.no_grad():
            model.model.encode_image(torch.cat([x, y]))
    finally:
        handle.remove()
    changed = (captured[0][0] - captured[0][1]).abs().sum(dim=-1) > 0
    assert changed.nonzero().flatten().tolist() == [r * gw + c]


def test_text_processor_pickles_without_the_model(model) -> None:
    blob = pickle.dumps(model.text_processor())
    assert len(blob) < 5_000_000  # the tokenizer, not the network
    assert torch.equal(pickle.loads(blob)([CAPTION]).offsets, model.tokenize([CAPTION]).offsets)


def test_injected_cross_attention_lands_on_its_cell(model, pixels) -> None:
    gh, gw = model.grid_size
    r, c = 2, 5

    def inject(_module, _inputs, output):
        context, probs = output
        fake = torch.zeros_like(probs)
        fake[..., 1 + r * gw + c] = 1.0
        return context, fake

    handle = model.model.text_encoder.encoder.layer[-1].crossattention.self.register_forward_hook(inject)
    try:
        with torch.inference_mode():
            m = model.text_image_maps(pixels[:1], model.tokenize([CAPTION]), ATTENTION)[0]
    finally:
        handle.remove()
    expected = torch.zeros(gh, gw)
    expected[r, c] = 1.0
    torch.testing.assert_close(m, expected.expand_as(m))


def test_gradcam_is_non_negative_and_not_raw_attention(model, pixels) -> None:
    batch = model.tokenize([CAPTION])
    with torch.inference_mode():  # as the runner calls it: gradients must still flow
        cam = model.text_image_maps(pixels[:1], batch, GRADCAM)[0]
        att = model.text_image_maps(pixels[:1], batch, MapMethod("attention", layer=0, head_reduction="mean"))[0]
    assert cam.min() >= 0 and cam[0].sum() > 0
    assert not torch.allclose(cam / cam.sum(dim=(-2, -1), keepdim=True), att / att.sum(dim=(-2, -1), keepdim=True), atol=1e-3)
    assert ALBEF_GRADCAM.layer == 8 - MODELS.get("albef-14m").config.get("fusion_layer", 6)


def test_random_build_is_deterministic(spec) -> None:
    a, b = (_build(spec).state_dict() for _ in range(2))
    c = _build(spec, seed=1).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["model.itm_head.weight"], c["model.itm_head.weight"])


def _albef_pretraining_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict named as ALBEF pre-training saves it, with its training-only extras."""
    out = {("text_encoder.bert." + k[len("text_encoder.") :] if k.startswith("text_encoder.") else k): v for k, v in state.items()}
    n_pos = state["text_encoder.embeddings.position_embeddings.weight"].shape[0]
    out.update({
        "text_encoder.bert.embeddings.position_ids": torch.arange(n_pos)[None],
        "text_encoder.cls.predictions.bias": torch.zeros(3),
        "visual_encoder_m.cls_token": state["visual_encoder.cls_token"],
        "text_encoder_m.bert.embeddings.word_embeddings.weight": torch.zeros(2, 2),
        "image_queue": torch.zeros(4, 8),
        "queue_ptr": torch.zeros(1, dtype=torch.long),
        "temp": torch.tensor(0.07),
    })
    return out


def test_albef_checkpoint_loads_and_regrids(model, spec, tmp_path, pixels) -> None:
    path = tmp_path / "ALBEF.pth"
    torch.save({"model": _albef_pretraining_layout(model.model.state_dict()), "epoch": 29}, path)
    loaded = _build(spec, checkpoint=path, seed=1)
    assert all(torch.equal(v, loaded.model.state_dict()[k]) for k, v in model.model.state_dict().items())
    assert loaded.capabilities == model.capabilities
    batch = model.tokenize([CAPTION])
    torch.testing.assert_close(loaded.match_scores(pixels[:1], batch), model.match_scores(pixels[:1], batch))
    bigger = _build(spec, checkpoint=path, image_size=96)
    assert bigger.grid_size == (12, 12) and bigger.model.visual_encoder.pos_embed.shape[1] == 1 + 144


def test_missing_itm_head_disables_match(model, spec, tmp_path, pixels) -> None:
    state = {k: v for k, v in model.model.state_dict().items() if not k.startswith("itm_head.")}
    torch.save(state, tmp_path / "no_itm.pth")
    loaded = _build(spec, checkpoint=tmp_path / "no_itm.pth")
    assert "match" not in loaded.capabilities and "maps" in loaded.capabilities
    with pytest.raises(CapabilityError, match="no 'match' capability"):
        loaded.match_scores(pixels[:1], loaded.tokenize([CAPTION]))


def test_wrong_architecture_and_shapes_are_clear_errors(model, spec, tmp_path) -> None:
    clip = alignbench.load_model("clip-tiny-random")
    torch.save(clip.model.state_dict(), tmp_path / "clip.pt")
    with pytest.raises(CheckpointError, match=r"clip\.pt does not fit the ALBEF layout.*another architecture"):
        _build(spec, checkpoint=tmp_path / "clip.pt")
    state = dict(model.model.state_dict())
    state["itm_head.weight"] = torch.zeros(3, 32)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"itm_head\.weight: checkpoint \(3, 32\) vs model \(2, 32\)"):
        _build(spec, checkpoint=tmp_path / "bad.pt")


def test_match_and_embeddings(model, pixels) -> None:
    batch = model.tokenize([CAPTION, *OTHERS])
    scores = model.match_scores(pixels, batch)
    assert scores.shape == (3,) and ((scores > 0) & (scores < 1)).all()
    assert model.embed_images(pixels).shape == model.embed_texts(batch).shape == (3, 16)


def test_unknown_map_method_and_layer_are_clear_errors(model, pixels) -> None:
    batch = model.tokenize([CAPTION])
    with pytest.raises(CapabilityError, match="no map method 'patch-similarity'"):
        model.text_image_maps(pixels[:1], batch, MapMethod("patch-similarity"))
    with pytest.raises(ValueError, match="layer 2 out of range for 2 albef map layers"):
        model.text_image_maps(pixels[:1], batch, MapMethod("attention", layer=2))


def test_evaluate_local_probe_end_to_end(model, tmp_path) -> None:
    # ALBEF's Grad-CAM convention: an early fusion layer, heads averaged (on the last fusion layer
    # only [CLS] reaches the ITM head, so every other token's Grad-CAM row is 0)
    tasks = alignbench.load_tasks(["align-bench-synth-local"], options={"protocol": {"layer": 0, "head_reduction": "mean"}})
    options = alignbench.RunOptions(limit=4, map_method="gradcam", quiet=True)
    (result,) = alignbench.evaluate(model, tasks, model_name="albef-tiny-random", output_dir=tmp_path, options=options)
    assert 0.0 <= result["metrics"]["box_score"] <= 1.0
    assert result["counts"]["samples"] == 4 and result["counts"]["phrases_scored"] > 0
    assert result["map_method"] == {"name": "gradcam", "layer": 0, "head_reduction": "mean", "phrase_maps": "sum of phrase token rows"}
