"""Parity of the METER-layout model and adapter with the reference (SCL) fixture."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from alignbench.models.base import CapabilityError, MapMethod
from alignbench.models.meter import (
    CheckpointError,
    MeterConfig,
    adapt_position_encoding,
    build_meter,
    load_checkpoint,
    load_into,
    load_tokenizer,
)

FIXTURE = Path(__file__).resolve().parents[2] / "shared/fixtures/align_bench_parity"
pytestmark = pytest.mark.skipif(not FIXTURE.is_dir(), reason=f"parity fixture not found at {FIXTURE}")

N = 10
FEATURE_ATOL = 1e-4
MAP_ATOL = 1e-5
POSITION_IDS = "text_transformer.embeddings.position_ids"


@pytest.fixture(scope="module")
def config() -> dict:
    return json.loads((FIXTURE / "config.json").read_text())


@pytest.fixture(scope="module")
def adapter(config):
    return build_meter(config, checkpoint=FIXTURE / "checkpoint.pt", tokenizer=FIXTURE / "tokenizer")


@pytest.fixture(scope="module")
def tokens() -> list[dict]:
    return json.loads((FIXTURE / "expected/tokens.json").read_text())


def _features(i: int) -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURE / f"expected/features_{i}.npz"))


def _maps(i: int) -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURE / f"expected/maps_{i}.npz"))


def _inputs(i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    f = _features(i)
    return tuple(torch.from_numpy(f[k])[None] for k in ("pixel_values", "text_ids", "text_masks"))


def _close(got: torch.Tensor, expected: np.ndarray, atol: float, what: str) -> None:
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=0, atol=atol, err_msg=what)


def test_state_dict_layout(adapter) -> None:
    ckpt = torch.load(FIXTURE / "checkpoint.pt", map_location="cpu", weights_only=True)["state_dict"]
    model_sd = adapter.model.state_dict()
    assert len(ckpt) == 226
    # transformers >= 4.31 keeps RoBERTa's position_ids as a non-persistent buffer.
    assert set(model_sd) | {POSITION_IDS} == set(ckpt)
    assert all(model_sd[k].shape == ckpt[k].shape for k in model_sd)
    assert adapter.load_info["ignored_keys"] == [POSITION_IDS]
    assert adapter.load_info["missing_keys"] == []
    assert adapter.describe()["checkpoint_sha256"] == "1cff8b038d0ed0e354b6ef1db6362d55f3d758c8dc95abcae80c9031cb8f4b1a"


@pytest.mark.parametrize("i", range(N))
def test_infer_parity(adapter, i: int) -> None:
    model, f, m = adapter.model, _features(i), _maps(i)
    px, ids, mask = _inputs(i)
    with torch.no_grad():
        out = model.infer(px, ids, mask, output_cross_attentions=True)
        got = {
            "text_encoder_out": out.text_encoder_out[0],
            "image_encoder_out": out.image_encoder_out[0],
            "text_feats": out.text_feats[0],
            "image_feats": out.image_feats[0],
            "cls_feats": out.cls_feats[0],
            "itm_logits": model.itm_score(out.cls_feats)[0],
            "con_text_proj": model.con_text_proj(ids, mask)[0],
            "con_image_proj": model.con_image_proj(px)[0],
        }
    for key, value in got.items():
        _close(value, f[key], FEATURE_ATOL, key)
    for layer in (0, 1):
        key = f"t2i_cross_attn_layer{layer}"
        _close(out.cross_attentions[layer][0], m[key], MAP_ATOL, key)


def test_tokenize_matches_reference(adapter, tokens) -> None:
    batch = adapter.tokenize([t["caption"] for t in tokens])
    for b, t in enumerate(tokens):
        n = len(t["input_ids"])
        assert batch.input_ids[b, :n].tolist() == t["input_ids"]
        assert batch.attention_mask[b].sum() == n
        assert batch.special[b, 0] and batch.special[b, n - 1] and not batch.special[b, 1 : n - 1].any()
        assert (batch.input_ids[b, n:] == 1).all() and batch.special[b, n:].all()
        first = t["caption"].split()[0]
        assert tuple(batch.offsets[b, 1].tolist()) == (0, len(adapter.tokenizer.tokenize(first)[0]))
    assert batch.global_index == 0 and not batch.extra["truncated"].any()


@pytest.mark.parametrize("i", range(N))
def test_maps_parity(adapter, tokens, i: int) -> None:
    px = _inputs(i)[0]
    text = adapter.tokenize([tokens[i]["caption"]])
    maps = adapter.text_image_maps(px, text, MapMethod())[0]
    expected = _maps(i)
    assert maps.shape[1:] == (8, 8) == adapter.grid_size
    _close(maps[0], expected["global_att_map"], MAP_ATOL, "global_att_map")
    _close(maps[1:-1], expected["local_att_map_tokens"], MAP_ATOL, "local_att_map_tokens")


def test_padded_batch_equals_batch_of_one(adapter, tokens) -> None:
    px = torch.cat([_inputs(i)[0] for i in range(N)])
    text = adapter.tokenize([t["caption"] for t in tokens])
    assert text.attention_mask.sum(1).min() < text.input_ids.shape[1]  # padding present
    method = MapMethod(layer=0, head_reduction="mean")
    batched = {m: adapter.text_image_maps(px, text, m) for m in (MapMethod(), method)}
    batched_match = adapter.match_scores(px, text)
    batched_emb = adapter.embed_texts(text)
    for i in range(N):
        single_text = adapter.tokenize([tokens[i]["caption"]])
        n = single_text.input_ids.shape[1]
        for m, maps in batched.items():
            single = adapter.text_image_maps(px[i : i + 1], single_text, m)[0]
            _close(maps[i, :n], single.numpy(), MAP_ATOL, f"maps {m}")
            assert not maps[i, n:].any()
        _close(batched_match[i], adapter.match_scores(px[i : i + 1], single_text)[0].numpy(), FEATURE_ATOL, "match")
        _close(batched_emb[i], adapter.embed_texts(single_text)[0].numpy(), FEATURE_ATOL, "embed_texts")


@pytest.mark.parametrize("caption,image", [(0, 1), (3, 7), (9, 2), (5, 5)])
def test_pairwise_itm(adapter, tokens, caption: int, image: int) -> None:
    pairwise = np.load(FIXTURE / "expected/pairwise.npz")
    px = _inputs(image)[0]
    text = adapter.tokenize([tokens[caption]["caption"]])
    expected = pairwise["itm_logits"][caption, image]
    logits = adapter.model.itm_logits(px, text.input_ids, text.attention_mask)[0]
    _close(logits, expected, FEATURE_ATOL, "itm_logits")
    _close(adapter.match_scores(px, text)[0], expected[1] - expected[0], FEATURE_ATOL, "match score")
    sim = torch.cosine_similarity(adapter.embed_texts(text), adapter.embed_images(px), eps=1e-8)[0]
    _close(sim, pairwise["con_sim"][caption, image], FEATURE_ATOL, "con_sim")


def test_adapt_position_encoding() -> None:
    state_dict, _ = load_checkpoint(FIXTURE / "checkpoint.pt")
    after = adapt_position_encoding(state_dict, after=160, patch_size=16)
    expected = np.load(FIXTURE / "expected/adapt_pos_embed_160.npz")["after"]
    _close(after["vision_transformer.visual.positional_embedding"], expected, 1e-6, "adapt 160")
    assert "vision_transformer.decoder_pos_embed" not in after
    assert state_dict["vision_transformer.visual.positional_embedding"].shape == (65, 64)  # input untouched


def test_build_at_other_image_size(config) -> None:
    adapter = build_meter(config, checkpoint=FIXTURE / "checkpoint.pt", tokenizer=FIXTURE / "tokenizer", image_size=160)
    expected = np.load(FIXTURE / "expected/adapt_pos_embed_160.npz")["after"]
    _close(adapter.model.vision_transformer.visual.positional_embedding, expected, 1e-6, "pos embed on load")
    assert adapter.grid_size == (10, 10) and adapter.image_transform().size == 160
    assert adapter.load_info["missing_keys"] == ["vision_transformer.decoder_pos_embed"]


def _fresh_model(config):
    return build_meter(config, checkpoint=None, tokenizer=FIXTURE / "tokenizer").model


def test_wrong_architecture_is_a_clear_error(config, tmp_path) -> None:
    clip_like = {"visual.conv1.weight": torch.zeros(64, 3, 16, 16), "visual.class_embedding": torch.zeros(64)}
    path = tmp_path / "clip.pt"
    torch.save(clip_like, path)
    state_dict, hparams = load_checkpoint(path)
    assert hparams is None
    with pytest.raises(CheckpointError, match=r"clip\.pt.*missing keys.*unexpected keys \(visual\.class_embedding"):
        load_into(_fresh_model(config), state_dict, source=str(path))


def test_shape_mismatch_names_key_and_shapes(config) -> None:
    state_dict, _ = load_checkpoint(FIXTURE / "checkpoint.pt")
    state_dict["itm_score.fc.weight"] = torch.zeros(2, 64)
    with pytest.raises(CheckpointError, match=r"itm_score\.fc\.weight: checkpoint \(2, 64\) vs model \(2, 128\)"):
        load_into(_fresh_model(config), state_dict, source="ckpt")


def test_missing_file_names_path(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="nope.ckpt"):
        load_checkpoint(tmp_path / "nope.ckpt")


def test_checkpoint_formats_and_hparams(config, tmp_path) -> None:
    from safetensors.torch import save_file

    state_dict, _ = load_checkpoint(FIXTURE / "checkpoint.pt")
    save_file(state_dict, str(tmp_path / "m.safetensors"))
    torch.save({"model": state_dict, "hyper_parameters": {"config": {"image_size": 160}}}, tmp_path / "m.pth")
    sd_st, hp_st = load_checkpoint(tmp_path / "m.safetensors")
    sd_pth, hp_pth = load_checkpoint(tmp_path / "m.pth")
    assert hp_st is None and hp_pth == {"image_size": 160}
    assert all(torch.equal(sd_st[k], v) and torch.equal(sd_pth[k], v) for k, v in state_dict.items())
    # explicit config > checkpoint hparams > defaults
    assert MeterConfig.from_reference(config, defaults=hp_pth).image_size == 128
    assert MeterConfig.from_reference({}, defaults=hp_pth).image_size == 160


@pytest.mark.parametrize(
    "extra,removed,capabilities",
    [
        ({"vqa_classifier.0.weight": (3, 3)}, ("itm_score.", "mlm_score."), {"maps", "embed", "video"}),
        # METER: CLIP text-tower leftovers, no contrastive heads, no MLTC mask token
        (
            {"vision_transformer.token_embedding.weight": (7, 4), "vision_transformer.ln_final.weight": (4,)},
            ("vision_proj.", "language_proj.", "cl_temp", "vision_transformer.visual.visual_mask_token"),
            {"maps", "match", "video"},
        ),
    ],
)
def test_unused_keys_dropped_and_missing_heads_disable_capabilities(config, tmp_path, extra, removed, capabilities) -> None:
    state_dict, _ = load_checkpoint(FIXTURE / "checkpoint.pt")
    state_dict.update({k: torch.zeros(shape) for k, shape in extra.items()})
    for key in [k for k in state_dict if k.startswith(removed)]:
        del state_dict[key]
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": state_dict}, path)
    adapter = build_meter(config, checkpoint=path, tokenizer=FIXTURE / "tokenizer")
    assert set(extra) <= set(adapter.load_info["ignored_keys"])
    assert adapter.capabilities == frozenset(capabilities)
    px, text = _inputs(0)[0], adapter.tokenize(["a red circle"])
    call = {"match": lambda: adapter.match_scores(px, text), "embed": lambda: adapter.embed_texts(text)}
    for capability in {"match", "embed"} - set(capabilities):
        with pytest.raises(CapabilityError, match=capability):
            call[capability]()


def test_random_build_is_deterministic(config) -> None:
    a, b, c = (build_meter(config, checkpoint=None, tokenizer=FIXTURE / "tokenizer", seed=s).model for s in (3, 3, 4))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    key = "cross_modal_text_layers.0.attention.self.query.weight"
    assert not torch.equal(sa[key], sc[key])
    assert not a.training


def test_tiny_preset_is_the_fixture_architecture(config) -> None:
    assert MeterConfig.from_reference({"preset": "tiny"}) == MeterConfig.from_reference(config)
    with pytest.raises(ValueError, match="unknown METER preset"):
        MeterConfig.from_reference({"preset": "huge"})


def test_base_config_layout() -> None:
    cfg = MeterConfig.base()
    assert (cfg.hidden_size, cfg.num_heads, cfg.num_top_layer, cfg.image_size, cfg.max_text_len) == (768, 12, 6, 288, 50)
    assert (cfg.vision_resblocks, cfg.vision_heads, cfg.grid_size, cfg.vocab_size) == (11, 12, 18, 50265)
    assert (cfg.decoder_embed_dim, cfg.decoder_depth, cfg.decoder_num_heads) == (512, 8, 16)


def test_unknown_hub_tokenizer_offline_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="--tokenizer PATH"):
        load_tokenizer("alignbench-tests/no-such-tokenizer")
