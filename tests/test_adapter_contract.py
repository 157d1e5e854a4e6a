"""The adapter contract (``alignbench.models.base``), checked on every registered ``*-tiny-random`` model.

Models are discovered from the registry, so a new family's tiny model is covered as soon as
its JSON config exists; a family whose package does not import yet is skipped with the reason.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import alignbench
from alignbench.models.base import CAPABILITIES, AlignmentModel, CapabilityError, MapMethod
from alignbench.models.factory import family_adapter

TINY = [name for name in alignbench.MODELS.names() if name.endswith("-tiny-random")]
TEXTS = ["A red cube, left of the blue ball.", "two   small green spheres behind a large yellow cylinder near the purple cone"]


def _build(name: str) -> AlignmentModel:
    family = alignbench.MODELS.get(name).family
    try:
        return alignbench.load_model(name)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == f"alignbench.models.{family}" or exc.name.startswith(f"alignbench.models.{family}.")):
            pytest.skip(f"family {family!r} of {name} does not import yet: {exc}")
        raise


@pytest.fixture(scope="module", params=TINY)
def tiny(request: pytest.FixtureRequest) -> tuple[str, AlignmentModel]:
    return request.param, _build(request.param)


def _pixels(model: AlignmentModel, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, model.image_size, model.image_size, generator=g)


def _first_method(model: AlignmentModel) -> MapMethod:
    """The model's first map method (``"attention"`` need not be one: dual encoders lack it)."""
    return MapMethod(model.map_methods[0] if model.map_methods else "attention")


def test_models_are_discovered():
    assert {"meter-tiny-random", "blip-tiny-random", "vilt-tiny-random", "flava-tiny-random", "bridgetower-tiny-random"} <= set(TINY)


def test_eval_mode(tiny):
    _, model = tiny
    assert not any(m.training for m in model.modules())


def test_image_transform_shape(tiny):
    _, model = tiny
    s = model.image_size
    for size in [(97, 41), (41, 97), (s, s)]:
        x = model.image_transform()(Image.new("RGB", size, (200, 30, 90)))
        assert x.shape == (3, s, s) and x.dtype == torch.float32
    assert all(g * (s // g) == s for g in model.grid_size)


def test_tokenize_offsets_and_special_tokens_match_the_text(tiny):
    _, model = tiny
    text = model.text_processor()(TEXTS)
    L = text.input_ids.shape[1]
    assert text.attention_mask.shape == text.special.shape == (2, L) and text.offsets.shape == (2, L, 2)
    assert text.special[text.attention_mask == 0].all(), "padding must be flagged special"
    assert (text.offsets[text.special] == 0).all(), "special tokens span (0, 0)"
    assert text.attention_mask[:, text.global_index].all(), "the global token is never padding"
    for b, caption in enumerate(TEXTS):
        spans = [tuple(text.offsets[b, t].tolist()) for t in range(L) if not text.special[b, t]]
        assert spans, "a caption yields content tokens"
        assert all(0 <= s <= e <= len(caption) for s, e in spans)
        assert all(e1 <= s2 for (_, e1), (s2, _) in zip(spans, spans[1:], strict=False)), "spans increase and do not overlap"
        covered = set().union(*(range(s, e) for s, e in spans))
        assert {i for i, ch in enumerate(caption) if not ch.isspace()} <= covered, "every visible character is in a token"
        # a span is empty only for a whitespace-only token (byte-level BPE), otherwise it holds text
        assert all(caption[s:e].strip() for s, e in spans if e > s)


def test_declared_capabilities_work_and_others_raise(tiny):
    name, model = tiny
    assert set(model.capabilities) <= set(CAPABILITIES)
    px, text = _pixels(model, 2), model.tokenize(TEXTS)
    calls = {
        "maps": lambda: model.text_image_maps(px, text, _first_method(model)),
        "match": lambda: model.match_scores(px, text),
        "embed": lambda: (model.embed_images(px), model.embed_texts(text)),
    }
    for capability, call in calls.items():
        if capability not in model.capabilities:
            with pytest.raises(CapabilityError):
                call()
            continue
        out = call()
        if capability == "maps":
            assert out.shape == (2, text.input_ids.shape[1], *model.grid_size)
            assert torch.isfinite(out).all()
            assert (out[text.attention_mask == 0] == 0).all()
        elif capability == "match":
            assert out.shape == (2,) and torch.isfinite(out).all()
        else:
            images, texts = out
            assert images.ndim == texts.ndim == 2 and images.shape == texts.shape and images.shape[0] == 2


def test_unknown_map_method_raises(tiny):
    _, model = tiny
    if "maps" not in model.capabilities:
        pytest.skip("model declares no maps")
    assert model.map_methods, "a model with maps declares its map methods"
    with pytest.raises(CapabilityError):
        model.text_image_maps(_pixels(model, 1), model.tokenize(TEXTS[:1]), MapMethod("no-such-method"))


def test_padding_invariance(tiny):
    _, model = tiny
    px = _pixels(model, 1)
    alone, batch = model.tokenize(TEXTS[:1]), model.tokenize(TEXTS)
    assert batch.input_ids.shape[1] > alone.input_ids.shape[1], "the second caption must force padding of the first"
    both_px = torch.cat([px, _pixels(model, 1, seed=1)])
    if "match" in model.capabilities:
        torch.testing.assert_close(model.match_scores(both_px, batch)[0], model.match_scores(px, alone)[0], atol=1e-5, rtol=1e-5)
    if "embed" in model.capabilities:
        torch.testing.assert_close(model.embed_texts(batch)[0], model.embed_texts(alone)[0], atol=1e-5, rtol=1e-5)


MAP_METHODS = [(name, method) for name in TINY for method in family_adapter(alignbench.MODELS.get(name).family).map_methods]


@pytest.mark.parametrize("heads", ["max", "mean"])
@pytest.mark.parametrize(("name", "method"), MAP_METHODS)
def test_every_map_method_is_padding_and_batch_invariant(name, method, heads):
    """A caption's maps do not change when it is padded in a batch with a longer one and
    another image; padded positions get no relevance, every word some. Layer 0: at the last
    layer Grad-CAM is non-zero only for the token the matching head reads."""
    model = _build(name)
    px, alone, batch = _pixels(model, 1), model.tokenize(TEXTS[:1]), model.tokenize(TEXTS)
    n = alone.input_ids.shape[1]
    with torch.inference_mode():  # as the runner calls it: gradient-based methods must still work
        solo = model.text_image_maps(px, alone, MapMethod(method, layer=0, head_reduction=heads))
        both = model.text_image_maps(torch.cat([px, _pixels(model, 1, seed=1)]), batch, MapMethod(method, layer=0, head_reduction=heads))
    torch.testing.assert_close(both[0, :n], solo[0], atol=1e-5, rtol=0)
    assert (both[0, n:] == 0).all()
    assert (solo[0, ~alone.special[0]].sum(dim=(-1, -2)) > 0).all()


def test_two_builds_are_identical(tiny):
    name, model = tiny
    again = alignbench.load_model(name)
    ours, theirs = model.state_dict(), again.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    if "maps" in model.capabilities:
        px, text = _pixels(model, 2), model.tokenize(TEXTS)
        method = _first_method(model)
        assert torch.equal(model.text_image_maps(px, text, method), again.text_image_maps(px, text, method))
