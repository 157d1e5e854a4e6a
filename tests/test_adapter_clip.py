"""The clip family (open_clip dual encoders) on its tiny random build: tokenization offsets,
map rows, grid orientation, relevancy, matching, checkpoints, end to end."""

from __future__ import annotations

import pickle

import open_clip
import pytest
import torch
import torch.nn.functional as F

import alignbench
from alignbench.models.base import CapabilityError, MapMethod
from alignbench.models.clip import build_clip
from alignbench.models.clip.relevancy import recording_attention
from alignbench.models.factory import MODELS
from alignbench.scoring.phrases import locate_phrase, merge_words

CAPTION = "A Red triangle, left of the photobombing dog."
OTHERS = ["two cats", "a small green square above a large yellow circle near the dog"]
SIMILARITY, RELEVANCY = MapMethod("patch-similarity"), MapMethod("relevancy")


@pytest.fixture(scope="module")
def model():
    return alignbench.load_model("clip-tiny-random")


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 3, 64, 64, generator=g)


@pytest.fixture(scope="module")
def reference_tokenizer(model) -> open_clip.tokenizer.SimpleTokenizer:
    """open_clip's own tokenizer (the model's processor wraps the same class)."""
    return open_clip.get_tokenizer("ViT-B-16")


def _piece_text(tok: open_clip.tokenizer.SimpleTokenizer, token_id: int) -> str:
    piece = tok.decoder[token_id].removesuffix("</w>")
    return bytearray(tok.byte_decoder[c] for c in piece).decode("utf-8")


def _similarity_map(model, tokenizer, pixels: torch.Tensor, text: str) -> torch.Tensor:
    """The patch-similarity map of ``text``, computed with open_clip's own tokenizer and towers."""
    clip = model.model
    with torch.no_grad():
        _, tokens = clip.visual(pixels)
        patches = F.normalize(tokens @ clip.visual.proj, dim=-1)
        emb = F.normalize(clip.encode_text(tokenizer([text])), dim=-1)[0]
        return (clip.logit_scale.exp() * patches @ emb).softmax(dim=-1).reshape(-1, *model.grid_size)


def test_ids_match_open_clip_and_offsets_cover_pieces(model, reference_tokenizer) -> None:
    captions = [CAPTION, "Café  au LAIT's 12 mugs"]
    batch = model.tokenize(captions)
    reference = reference_tokenizer(captions)
    tok = model.text_processor().tokenizer
    for b, caption in enumerate(captions):
        n = int(batch.attention_mask[b].sum())
        assert torch.equal(batch.input_ids[b, :n], reference[b, :n])
        assert batch.special[b, 0] and batch.special[b, n - 1] and not batch.special[b, 1 : n - 1].any()
        for t in range(1, n - 1):
            start, end = batch.offsets[b, t].tolist()
            assert caption[start:end].lower() == _piece_text(tok, int(batch.input_ids[b, t]))
    assert batch.global_index == 0 and not batch.extra["truncated"].any()


def test_truncation_keeps_end_of_text(model) -> None:
    batch = model.tokenize([" ".join(["dog"] * 100)])
    assert batch.input_ids.shape[1] == 77 and batch.extra["truncated"].tolist() == [True]
    assert int(batch.input_ids[0, -1]) == model.text_processor().tokenizer.eot_token_id


@pytest.mark.parametrize("phrase", ["red triangle", "photobombing dog", "dog", "left of the"])
def test_phrases_located_by_offsets(model, phrase: str) -> None:
    batch = model.tokenize([CAPTION])
    positions = [t for t in range(batch.input_ids.shape[1]) if not batch.special[0, t]]
    words = merge_words(CAPTION, [tuple(batch.offsets[0, t].tolist()) for t in positions], positions, (".", ","))
    found = locate_phrase(words, phrase)
    assert found is not None
    start, end = int(batch.offsets[0, min(found), 0]), int(batch.offsets[0, max(found), 1])
    assert CAPTION[start:end].lower() == phrase


def test_rows_global_caption_and_units_alone(model, reference_tokenizer, pixels) -> None:
    batch = model.tokenize([CAPTION])
    with torch.inference_mode():
        maps = model.text_image_maps(pixels[:1], batch, SIMILARITY)
    L = batch.input_ids.shape[1]
    assert maps.shape == (1, L, *model.grid_size)
    torch.testing.assert_close(maps[0, 0], _similarity_map(model, reference_tokenizer, pixels[:1], CAPTION)[0], atol=1e-5, rtol=1e-5)
    words = [CAPTION[s:e].lower() for s, e in batch.offsets[0].tolist()]
    t = words.index("triangle")
    torch.testing.assert_close(maps[0, t], _similarity_map(model, reference_tokenizer, pixels[:1], "triangle")[0], atol=1e-5, rtol=1e-5)
    photo, bombing = words.index("photo"), words.index("bombing")  # two pieces of one word share its map
    torch.testing.assert_close(maps[0, photo], _similarity_map(model, reference_tokenizer, pixels[:1], "photobombing")[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(maps[0, photo], maps[0, bombing])
    assert maps[0, L - 1].abs().sum() == 0  # <end_of_text>
    torch.testing.assert_close(maps[0, : L - 1].sum(dim=(-2, -1)), torch.ones(L - 1))


def test_image_tokens_are_row_major(model) -> None:
    """Changing the pixels of grid cell (r, c) changes exactly visual token 1 + r * gw + c."""
    gh, gw = model.grid_size
    p = model.image_size // gw
    r, c = 2, 5
    captured = []
    handle = model.model.visual.ln_pre.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0]))
    try:
        x = torch.zeros(1, 3, model.image_size, model.image_size)
        y = x.clone()
        y[..., r * p : (r + 1) * p, c * p : (c + 1) * p] = 1.0
        with torch.no_grad():
            model.embed_images(torch.cat([x, y]))
    finally:
        handle.remove()
    changed = (captured[0][0] - captured[0][1]).abs().sum(dim=-1) > 0
    assert changed.nonzero().flatten().tolist() == [1 + r * gw + c]


def test_processors_pickle(model) -> None:
    processor = pickle.loads(pickle.dumps(model.text_processor()))
    assert torch.equal(processor([CAPTION]).input_ids, model.tokenize([CAPTION]).input_ids)


def test_grid_orientation_is_row_major(model, pixels) -> None:
    """Replace the visual tower's output by zeros but for patch token ``k``: only cell ``k`` may differ."""
    gh, gw = model.grid_size
    r, c = 2, 5
    k = r * gw + c

    def inject(_module, _inputs, output: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(output)
        out[:, 1 + k] = torch.linspace(-1.0, 1.0, output.shape[-1])
        return out

    handle = model.model.visual.transformer.register_forward_hook(inject)
    try:
        with torch.inference_mode():
            m = model.text_image_maps(pixels[:1], model.tokenize([CAPTION]), SIMILARITY)[0, 0]
    finally:
        handle.remove()
    differs = (m - m.median()).abs() > 1e-6
    assert differs.nonzero().tolist() == [[r, c]]


def test_relevancy_is_non_negative_and_not_raw_attention(model, pixels) -> None:
    batch = model.tokenize([CAPTION])
    with torch.inference_mode():  # as the runner calls it: gradients must still flow
        rel = model.text_image_maps(pixels[:1], batch, RELEVANCY)
    assert rel.min() >= 0 and rel[0, 0].sum() > 0
    with torch.no_grad(), recording_attention(list(model.model.visual.transformer.resblocks)) as probs:
        model.model.visual(pixels[:1])
    raw = probs[-1][0, :, 0, 1:].mean(dim=0).reshape(model.grid_size)
    assert not torch.allclose(rel[0, 0] / rel[0, 0].sum(), raw / raw.sum(), atol=1e-3)


def test_random_build_is_deterministic() -> None:
    config = MODELS.get("clip-tiny-random").config
    a, b = (build_clip(config, checkpoint=None).state_dict() for _ in range(2))
    c = build_clip(config, checkpoint=None, seed=1).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["model.visual.proj"], c["model.visual.proj"])


def test_local_checkpoint_loads(model, tmp_path) -> None:
    path = tmp_path / "tiny.pt"
    torch.save(model.model.state_dict(), path)
    loaded = build_clip(MODELS.get("clip-tiny-random").config, checkpoint=path, seed=1)
    assert all(torch.equal(v, loaded.model.state_dict()[k]) for k, v in model.model.state_dict().items())
    assert loaded.describe()["checkpoint"] == str(path.resolve())


def test_match_is_cosine_of_open_clip_embeddings(model, reference_tokenizer, pixels) -> None:
    captions = [CAPTION, *OTHERS]
    with torch.no_grad():
        image = F.normalize(model.model.visual(pixels)[0], dim=-1)  # (pooled, tokens): output_tokens is on
        text = model.model.encode_text(reference_tokenizer(captions), normalize=True)
    scores = model.match_scores(pixels, model.tokenize(captions))
    torch.testing.assert_close(scores, (image * text).sum(dim=-1), atol=1e-5, rtol=1e-5)
    assert model.embed_images(pixels).shape == model.embed_texts(model.tokenize(captions)).shape == (3, 32)


def test_unknown_map_method_and_config_are_clear_errors(model, pixels) -> None:
    with pytest.raises(CapabilityError, match="no map method 'attention'.*patch-similarity"):
        model.text_image_maps(pixels[:1], model.tokenize([CAPTION]), MapMethod("attention"))
    with pytest.raises(ValueError, match="needs 'model'.*'model_cfg'"):
        build_clip({"pretrained": "openai"}, checkpoint=None)


def test_evaluate_local_probe_end_to_end(model, tmp_path) -> None:
    tasks = alignbench.load_tasks(["align-bench-synth-local"])
    options = alignbench.RunOptions(limit=4, map_method="patch-similarity", quiet=True)
    (result,) = alignbench.evaluate(model, tasks, model_name="clip-tiny-random", output_dir=tmp_path, options=options)
    assert 0.0 <= result["metrics"]["box_score"] <= 1.0
    assert result["counts"]["samples"] == 4 and result["counts"]["phrases_scored"] > 0
