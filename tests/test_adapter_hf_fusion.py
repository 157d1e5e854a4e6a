"""The transformers-backed fusion adapters (BLIP, ViLT, FLAVA, BridgeTower) on their tiny models.

Grid orientation is checked by overwriting the attention probabilities of the mapped layer
through a forward hook (all mass on the key of one known patch) and asserting that the map
lights exactly that cell, row-major. Scores are checked against the transformers models' own
forward passes, which the adapters re-implement in parts.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import transformers
from click.testing import CliRunner

import alignbench
from alignbench.cli import cli
from alignbench.models.base import CapabilityError, MapMethod, require_capabilities
from alignbench.models.factory import ASSETS_DIR, MODELS
from alignbench.models.hub import sha256_path

BERT_VOCAB = ASSETS_DIR / "bert-uncased-vocab"
SHORT = "a red cube left of a blue ball"
LONG = "a small green sphere is behind the large yellow cylinder, next to a purple cone"
CELL = (1, 5)  # row 1, column 5 of the 8x8 grid: not symmetric, so a transposed map would miss it


@dataclass(frozen=True)
class Layout:
    """Where a family's mapped attention lives and which key column holds a grid cell."""

    module: Callable[[torch.nn.Module, int], torch.nn.Module]  # (hf model, layer) -> attention module
    key_column: Callable[[int, int, int], int]  # (batch row, text length, row-major patch) -> key index


LAYOUTS = {
    # cross-attention keys: image [CLS], patches
    "blip": Layout(lambda m, i: m.text_encoder.encoder.layer[i].crossattention.self, lambda b, L, p: 1 + p),
    "bridgetower": Layout(lambda m, i: m.bridgetower.cross_modal_text_layers[i].crossattention.self, lambda b, L, p: 1 + p),
    # multimodal self-attention keys: multimodal [CLS], image [CLS], patches, text
    "flava": Layout(lambda m, i: m.flava.multimodal_model.encoder.layer[i].attention.attention, lambda b, L, p: 2 + p),
    # self-attention keys: text, image [CLS], patches in ViLT's shuffled order (resolved in the test)
    "vilt": Layout(lambda m, i: m.vilt.encoder.layer[i].attention.attention, None),  # type: ignore[arg-type]
}
TINY = [f"{family}-tiny-random" for family in LAYOUTS]


@pytest.fixture(scope="module")
def models() -> dict[str, alignbench.models.base.AlignmentModel]:
    return {name: alignbench.load_model(name) for name in TINY}


def _inputs(model, texts: list[str], seed: int = 0) -> tuple[torch.Tensor, object]:
    g = torch.Generator().manual_seed(seed)
    px = torch.randn(len(texts), 3, model.image_size, model.image_size, generator=g)
    return px, model.tokenize(texts)


def _inject(layout_module: torch.nn.Module, columns: list[int]):
    """Forward hook: every query of batch row b puts all its attention on key ``columns[b]``."""

    def hook(_module, _inputs, output):
        context, probs = output[0], output[1]
        forced = torch.zeros_like(probs)
        for b, col in enumerate(columns):
            forced[b, :, :, col] = 1.0
        return (context, forced, *output[2:])

    return layout_module.register_forward_hook(hook)


def _assert_lights_cell(maps: torch.Tensor, attention_mask: torch.Tensor, cell: tuple[int, int]) -> None:
    expected = torch.zeros(maps.shape[-2:])
    expected[cell] = 1.0
    for b in range(maps.shape[0]):
        for t in range(maps.shape[1]):
            want = expected if attention_mask[b, t] else torch.zeros_like(expected)
            torch.testing.assert_close(maps[b, t].float(), want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", TINY)
def test_shapes_and_padding_rows(models, name):
    model = models[name]
    px, text = _inputs(model, [SHORT, LONG])
    maps = model.text_image_maps(px, text, MapMethod())
    assert model.grid_size == (8, 8)
    assert maps.shape == (2, text.input_ids.shape[1], 8, 8)
    assert torch.isfinite(maps).all() and (maps >= 0).all()
    pad = text.attention_mask == 0
    assert pad[0].any(), "the short caption should be padded"
    assert (maps[pad] == 0).all()
    assert (maps[~pad].sum(dim=(-1, -2)) > 0).all()


@pytest.mark.parametrize("name", TINY)
def test_grid_orientation(models, name, monkeypatch):
    model = models[name]
    family = model.family
    px, text = _inputs(model, [SHORT, LONG])
    gh, gw = model.grid_size
    patch = CELL[0] * gw + CELL[1]
    n_text = text.input_ids.shape[1]
    if family == "vilt":
        # record ViLT's patch order from its embedding, then aim at the key holding CELL
        embeddings = model.model.vilt.embeddings
        seen: list[torch.Tensor] = []
        original = embeddings.visual_embed

        def recording(*args, **kwargs):
            out = original(*args, **kwargs)
            seen.append(out[2][0])
            return out

        monkeypatch.setattr(embeddings, "visual_embed", recording)
        model.text_image_maps(px, text, MapMethod())  # learn the order
        patch_index = seen[-1]
        row_major = torch.stack(torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij"), -1).reshape(-1, 2)
        assert not torch.equal(patch_index[0], row_major), "ViLT patches should arrive shuffled"
        columns = [n_text + 1 + int(((patch_index[b] == torch.tensor(CELL)).all(-1)).nonzero()) for b in range(2)]
    else:
        columns = [LAYOUTS[family].key_column(b, n_text, patch) for b in range(2)]
    handle = _inject(LAYOUTS[family].module(model.model, -1), columns)
    try:
        for head_reduction in ("max", "mean"):
            maps = model.text_image_maps(px, text, MapMethod(layer=-1, head_reduction=head_reduction))
            _assert_lights_cell(maps, text.attention_mask, CELL)
    finally:
        handle.remove()


def test_vilt_dropped_patches_stay_empty():
    cfg = copy.deepcopy(MODELS.get("vilt-tiny-random").config)
    cfg["architecture"]["max_image_length"] = 20
    model = alignbench.load_model("vilt-tiny-random", model_config=cfg)
    px, text = _inputs(model, [SHORT])
    _, _, patch_index = model.embed_image(px)
    kept = torch.zeros(8, 8, dtype=torch.bool)
    kept[patch_index[0, :, 0], patch_index[0, :, 1]] = True
    assert kept.sum() == 20
    maps = model.text_image_maps(px, text, MapMethod())
    valid = text.attention_mask[0].bool()
    assert ((maps[0, valid] > 0) == kept).all()


@pytest.mark.parametrize("name", TINY)
def test_repeated_calls_are_identical(models, name):
    model = models[name]
    px, text = _inputs(model, [SHORT, LONG])
    methods = [MapMethod(m) for m in model.map_methods]
    for method in methods:
        assert torch.equal(model.text_image_maps(px, text, method), model.text_image_maps(px, text, method))
    if "match" in model.capabilities:
        assert torch.equal(model.match_scores(px, text), model.match_scores(px, text))


@pytest.mark.parametrize("name", TINY)
def test_bf16_autocast(models, name):
    model = models[name]
    px, text = _inputs(model, [SHORT, LONG])
    for method in model.map_methods:
        reference = model.text_image_maps(px, text, MapMethod(method)).float()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            maps = model.text_image_maps(px, text, MapMethod(method)).float()
        assert maps.shape == reference.shape and torch.isfinite(maps).all()
        if method == "attention":
            torch.testing.assert_close(maps, reference, atol=2e-2, rtol=0)
    if "match" in model.capabilities:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.isfinite(model.match_scores(px, text)).all()


@pytest.mark.parametrize(
    ("name", "missing"),
    [("vilt-tiny-random", "embed"), ("bridgetower-tiny-random", "embed")],
)
def test_undeclared_capabilities_raise(models, name, missing):
    model = models[name]
    px, text = _inputs(model, [SHORT])
    assert missing not in model.capabilities
    with pytest.raises(CapabilityError):
        model.embed_images(px)
    with pytest.raises(CapabilityError):
        model.embed_texts(text)
    with pytest.raises(CapabilityError, match="cannot run task 'retrieval'"):
        require_capabilities(model, name, "retrieval", {"embed"})


@pytest.mark.parametrize("name", TINY)
def test_bad_map_method_and_layer(models, name):
    model = models[name]
    px, text = _inputs(model, [SHORT])
    unknown = "gradcam" if "gradcam" not in model.map_methods else "relevancy"
    with pytest.raises(CapabilityError, match=unknown):
        model.text_image_maps(px, text, MapMethod(unknown))
    with pytest.raises(ValueError, match="out of range"):
        model.text_image_maps(px, text, MapMethod(layer=99))
    with pytest.raises(ValueError, match="head_reduction"):
        model.text_image_maps(px, text, MapMethod(head_reduction="median"))


def _save(model, folder: Path) -> None:
    """A save_pretrained folder as the hub would hold it (weights, config, image processor, tokenizer)."""
    model.model.save_pretrained(folder)
    processors = {
        "blip": transformers.BlipImageProcessor,
        "vilt": transformers.ViltImageProcessor,
        "flava": transformers.FlavaImageProcessor,
        "bridgetower": transformers.BridgeTowerImageProcessor,
    }
    processors[model.family]().save_pretrained(folder)
    model.text.tokenizer.save_pretrained(folder)


@pytest.mark.parametrize("inside", ["", "config.json"], ids=["folder", "file-in-folder"])
@pytest.mark.parametrize("name", TINY)
def test_loads_save_pretrained_folder(models, name, inside, tmp_path):
    """``--checkpoint`` names a save_pretrained folder (its tokenizer is used) or a file in one."""
    model = models[name]
    _save(model, tmp_path)
    loaded = alignbench.load_model(name, checkpoint=tmp_path / inside)
    assert loaded.load_info["missing_keys"] == [] and loaded.load_info["pretrained"] == str(tmp_path)
    info = loaded.describe()
    assert info["source"] == info["checkpoint"] == str(tmp_path / inside)
    assert info["checkpoint_sha256"] == sha256_path(tmp_path / inside)
    assert info["tokenizer"] == (str(tmp_path) if not inside else MODELS.get(name).tokenizer)
    px, text = _inputs(model, [SHORT, LONG])
    expected = model.text_image_maps(px, text, MapMethod())
    torch.testing.assert_close(loaded.text_image_maps(px, text, MapMethod()), expected, atol=1e-6, rtol=0)


def test_checkpoint_folder_through_the_cli(models, tmp_path):
    _save(models["vilt-tiny-random"], tmp_path / "vilt")
    args = ["eval", "--model", "vilt-tiny-random", "--checkpoint", str(tmp_path / "vilt"), "--task", "align-bench-synth-global",
            "--limit", "2", "--quiet", "--output", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    result_file = tmp_path / "out" / "vilt-tiny-random" / "align-bench-synth-global.json"
    assert json.loads(result_file.read_text())["model_info"]["checkpoint"] == str(tmp_path / "vilt")


def test_bad_checkpoint_paths_are_clear_errors(models, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope does not exist"):
        alignbench.load_model("blip-tiny-random", checkpoint=tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="has no config.json; pass the folder that save_pretrained wrote"):
        alignbench.load_model("blip-tiny-random", checkpoint=tmp_path)
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=f"its folder {tmp_path} has no config.json"):
        alignbench.load_model("blip-tiny-random", checkpoint=tmp_path / "weights.bin")
    with pytest.raises(FileNotFoundError, match="is a folder; meter models read one checkpoint file"):
        alignbench.load_model("meter-tiny-random", checkpoint=tmp_path)


def test_flava_without_itm_head_declares_no_match(tmp_path):
    from transformers import FlavaImageProcessor

    from alignbench.models.flava import build

    full = alignbench.load_model("flava-tiny-random")
    full.model.flava.save_pretrained(tmp_path)  # a bare FlavaModel: no ITM head weights
    FlavaImageProcessor().save_pretrained(tmp_path)
    model = build({}, checkpoint=tmp_path, tokenizer=str(BERT_VOCAB))
    assert model.capabilities == {"maps", "embed"}
    px, text = _inputs(model, [SHORT])
    with pytest.raises(CapabilityError):
        model.match_scores(px, text)
    torch.testing.assert_close(model.text_image_maps(px, text, MapMethod()), full.text_image_maps(px, text, MapMethod()), atol=1e-6, rtol=0)


def test_missing_hub_model_says_how_to_fix():
    from alignbench.models.blip import build

    with pytest.raises(FileNotFoundError, match="--checkpoint PATH") as info:
        build({"pretrained": "alignbench-tests/no-such-model"}, tokenizer=str(BERT_VOCAB))
    assert "`hf download alignbench-tests/no-such-model`" in str(info.value)


# --- agreement with the transformers models' own forward passes ---------------------------


def test_blip_scores_match_transformers_forward(models):
    model = models["blip-tiny-random"]
    hf = model.model
    px, text = _inputs(model, [SHORT, LONG])
    itm = hf(input_ids=text.input_ids, pixel_values=px, attention_mask=text.attention_mask).itm_score
    torch.testing.assert_close(model.match_scores(px, text), itm.softmax(-1)[:, 1], atol=1e-6, rtol=0)
    itc = hf(input_ids=text.input_ids, pixel_values=px, attention_mask=text.attention_mask, use_itm_head=False).itm_score
    img = torch.nn.functional.normalize(model.embed_images(px), dim=-1)
    txt = torch.nn.functional.normalize(model.embed_texts(text), dim=-1)
    torch.testing.assert_close(img @ txt.T, itc, atol=1e-6, rtol=0)


@pytest.mark.parametrize("layer", [0, -1])
def test_blip_gradcam_matches_backward_through_transformers_forward(models, layer):
    model = models["blip-tiny-random"]
    hf = model.model
    px, text = _inputs(model, [SHORT, LONG])
    kept: list[torch.Tensor] = []

    def keep(_module, _inputs, output):
        output[1].retain_grad()
        kept.append(output[1])

    handle = hf.text_encoder.encoder.layer[layer].crossattention.self.register_forward_hook(keep)
    try:
        hf(input_ids=text.input_ids, pixel_values=px, attention_mask=text.attention_mask).itm_score[:, 1].sum().backward()
    finally:
        handle.remove()
        hf.zero_grad(set_to_none=True)
    probs = kept[0]
    expected = (probs.grad * probs).clamp(min=0).mean(dim=1)[..., 1:].reshape(2, -1, 8, 8)
    expected = expected * text.attention_mask[:, :, None, None]
    with torch.inference_mode():
        got = model.text_image_maps(px, text, MapMethod("gradcam", layer, head_reduction="mean"))
    torch.testing.assert_close(got, expected.detach(), atol=1e-9, rtol=1e-4)
    assert (got[:, 0].sum(dim=(-1, -2)) > 0).all()


def test_vilt_match_is_independent_of_patch_order(models):
    model = models["vilt-tiny-random"]
    px, text = _inputs(model, [SHORT, LONG])
    hf = model.model(input_ids=text.input_ids, attention_mask=text.attention_mask, pixel_values=px).logits[:, 0]
    torch.testing.assert_close(model.match_scores(px, text), hf, atol=1e-5, rtol=0)


def test_flava_match_uses_transformers_multimodal_encoding(models):
    model = models["flava-tiny-random"]
    px, text = _inputs(model, [SHORT, LONG])
    out = model.model.flava(input_ids=text.input_ids, attention_mask=text.attention_mask, pixel_values=px)
    expected = model.model.itm_head(out.multimodal_embeddings).softmax(-1)[:, 1]
    torch.testing.assert_close(model.match_scores(px, text), expected, atol=1e-6, rtol=0)


# --- end to end ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", TINY)
def test_evaluate_synthetic_local(models, name, tmp_path):
    tasks = alignbench.load_tasks(["align-bench-synth-local"])
    opts = alignbench.RunOptions(limit=4, quiet=True)
    (result,) = alignbench.evaluate(models[name], tasks, model_name=name, output_dir=tmp_path, options=opts)
    assert result["n_samples"] == 4
    assert list((tmp_path / name).glob("*.json")), "the result file is written (model_info must be JSON)"
    assert result["counts"]["phrases_scored"] > 0
    assert 0.0 <= result["metrics"]["box_score"] <= 1.0
    assert result["metrics"]["pixel_score"] >= 0.0  # reference pixel masks count overlaps, so no upper bound of 1


def test_evaluate_gradcam_under_the_runner(models):
    """The runner scores under ``inference_mode``; gradcam must still get its gradients."""
    tasks = alignbench.load_tasks(["align-bench-synth-global"])
    opts = alignbench.RunOptions(limit=4, quiet=True, map_method="gradcam")
    (result,) = alignbench.evaluate(models["blip-tiny-random"], tasks, options=opts)
    assert result["map_method"]["name"] == "gradcam"
    assert 0.0 <= result["metrics"]["box_score"] <= 1.0
