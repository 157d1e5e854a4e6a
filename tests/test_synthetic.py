"""Tests of the synthetic suite ``align-bench-synth`` (alignbench.data.synthetic)."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from alignbench.data.synthetic import (
    COLOURS,
    GENERATOR_VERSION,
    HARD_NEGATIVE_KINDS,
    SHAPES,
    SyntheticGroundingSource,
    SyntheticHardNegativeSource,
    SyntheticRetrievalSource,
    find_phrase,
    generate_scene,
    hard_negative_pairs,
)
from alignbench.data.synthetic.render import ShapeGeometry, shape_mask

NUMBERS = {"two": 2, "three": 3, "four": 4}
PLURALS = {s + ("es" if s.endswith("s") else "s"): s for s in SHAPES}
RELATION_WORDS = {"to the left of": "left of", "to the right of": "right of", "above": "above", "below": "below"}
N_SCENES = 60


@pytest.fixture(scope="module")
def scenes():
    source = SyntheticGroundingSource("mini", seed=0)
    return [source[i] for i in range(N_SCENES)]


def _words(text: str) -> list[str]:
    return [w.rstrip(".,") for w in text.lower().split()]


def parse_mentions(text: str) -> list[tuple[str, str, int]]:
    """(colour, shape, count) of every "<colour> <shape>" in ``text``, independently of the generator."""
    words, out = _words(text), []
    for i in range(len(words) - 1):
        colour, noun = words[i], words[i + 1]
        if colour in COLOURS and (noun in SHAPES or noun in PLURALS):
            count = NUMBERS[words[i - 1]] if noun in PLURALS else 1
            out.append((colour, PLURALS.get(noun, noun), count))
    return out


def parse_relation(text: str) -> str | None:
    first_sentence = text.split(".")[0]
    found = [rel for words, rel in RELATION_WORDS.items() if f" {words} " in f" {first_sentence} "]
    assert len(found) <= 1
    return found[0] if found else None


def union_box(objects: list[dict]) -> tuple[float, ...]:
    boxes = np.array([o["box"] for o in objects])
    return (*boxes[:, :2].min(0), *boxes[:, 2:].max(0))


def caption_true(text: str, meta: dict) -> bool:
    """Truth of a caption for a scene, read from the text and the scene's object list."""
    objects, mentions = meta["objects"], parse_mentions(text)
    groups = {(c, s): [o for o in objects if (o["colour"], o["shape"]) == (c, s)] for c, s, _ in mentions}
    if any(len(groups[(c, s)]) != n for c, s, n in mentions):
        return False
    relation = parse_relation(text)
    if relation is None:
        return True
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = (union_box(groups[m[:2]]) for m in mentions[:2])
    return {"left of": ax1 <= bx0, "right of": bx1 <= ax0, "above": ay1 <= by0, "below": by1 <= ay0}[relation]


def test_determinism():
    a, b = generate_scene(3, 7), generate_scene(3, 7)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert (a.sample_id, a.caption, a.meta) == (b.sample_id, b.caption, b.meta) == (a.sample_id, a.caption, a.meta)
    assert [p.text for p in a.phrases] == [p.text for p in b.phrases]
    for pa, pb in zip(a.phrases, b.phrases):
        for ra, rb in zip(pa.regions, pb.regions):
            assert ra.box == rb.box and np.array_equal(ra.mask, rb.mask)
    c = generate_scene(4, 7)
    assert c.sample_id != a.sample_id
    assert a.image.size != c.image.size or not np.array_equal(np.asarray(a.image), np.asarray(c.image))
    assert a.meta["generator_version"] == GENERATOR_VERSION and a.sample_id == "synth-3-00007"


def test_images_vary_in_size(scenes):
    sizes = [s.image.size for s in scenes]
    assert all(96 <= w <= 320 and 96 <= h <= 320 for w, h in sizes)
    assert any(w > h for w, h in sizes) and any(h > w for w, h in sizes)
    assert all(s.image.mode == "RGB" for s in scenes)


def test_masks_are_exact_pixels_and_boxes_are_tight(scenes):
    for s in scenes:
        pixels = np.asarray(s.image)
        w, h = s.image.size
        object_masks = []
        for p in s.phrases:
            for r in p.regions:
                assert r.mask.shape == (h, w) and r.mask.dtype == bool and r.mask.any()
                ys, xs = np.nonzero(r.mask)
                assert r.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
                assert all(isinstance(v, float) for v in r.box)
            if p.text.endswith("background"):
                assert p.regions[0].mask.all() and p.regions[0].box == (0.0, 0.0, float(w), float(h))
                continue
            (colour, _, _), = parse_mentions(p.text)
            for r in p.regions:
                assert (pixels[r.mask] == COLOURS[colour]).all()
                object_masks.append((colour, r.mask))
        coverage = sum(m.astype(int) for _, m in object_masks)
        assert coverage.max() == 1  # occlusion: visible masks never overlap
        for colour in {c for c, _ in object_masks}:  # no pixel of an object's colour outside its masks
            painted = (pixels == COLOURS[colour]).all(axis=-1)
            assert np.array_equal(painted, np.logical_or.reduce([m for c, m in object_masks if c == colour]))


def test_meta_boxes_match_regions(scenes):
    for s in scenes:
        region_boxes = sorted(r.box for p in s.phrases if not p.text.endswith("background") for r in p.regions)
        assert region_boxes == sorted(tuple(o["box"]) for o in s.meta["objects"])
        assert all(o["visible_fraction"] >= 0.5 for o in s.meta["objects"])


def test_phrases_occur_once_as_whole_words(scenes):
    for s in scenes:
        assert s.caption == s.caption.lower()
        words = _words(s.caption)
        for p in s.phrases:
            target = p.text.split()
            hits = [i for i in range(len(words)) if words[i : i + len(target)] == target]
            assert len(hits) == 1, (s.caption, p.text)
            assert find_phrase(s.caption, p.text) == hits[0]
            assert not {"a", "an", "the"} & set(target)
    assert find_phrase("a bred circle.", "red circle") is None


def test_count_phrases_have_one_region_per_object(scenes):
    counted = 0
    for s in scenes:
        for p in s.phrases:
            first = p.text.split()[0]
            expected = NUMBERS.get(first, 1)
            assert len(p.regions) == expected
            counted += first in NUMBERS
    assert counted > 0


def test_phrases_are_unambiguous(scenes):
    for s in scenes:
        mentions = parse_mentions(s.caption)
        assert len({m[:2] for m in mentions}) == len(mentions)
        assert sorted(m[:2] for m in mentions) == sorted({(o["colour"], o["shape"]) for o in s.meta["objects"]})


def test_captions_are_true_and_relations_match_geometry(scenes):
    relations = 0
    for s in scenes:
        assert caption_true(s.caption, s.meta), s.caption
        relation = parse_relation(s.caption)
        assert [r["relation"] for r in s.meta["relations"]] == ([relation] if relation else [])
        relations += relation is not None
    assert 0 < relations < len(scenes)


def test_background_phrase_in_a_minority():
    source = SyntheticGroundingSource("mini")
    with_background = sum(any(p.text.endswith("background") for p in source[i].phrases) for i in range(100))
    assert 0 < with_background < 50


def _pixels_digest(sample) -> str:
    return hashlib.sha256(np.asarray(sample.image).tobytes()).hexdigest()


def test_train_and_test_are_disjoint():
    test, train = SyntheticGroundingSource(split="test"), SyntheticGroundingSource(split="train")
    assert not set(test.sample_ids) & set(train.sample_ids)
    assert not {_pixels_digest(test[i]) for i in range(40)} & {_pixels_digest(train[i]) for i in range(40)}
    assert test.fingerprint != train.fingerprint
    assert SyntheticGroundingSource(seed=1, split="test").scene_seed != train.scene_seed


def test_sizes_and_errors():
    mini, full = SyntheticGroundingSource(), SyntheticGroundingSource("full")
    assert (len(mini), len(full)) == (200, 2000)
    assert len(set(mini.sample_ids)) == 200 and mini.sample_ids[5] == mini[5].sample_id
    with pytest.raises(ValueError, match="mini.*full"):
        SyntheticGroundingSource("huge")
    with pytest.raises(ValueError, match="test"):
        SyntheticGroundingSource(split="val")
    with pytest.raises(IndexError):
        mini[200]
    assert mini[-1].sample_id == mini.sample_ids[-1]


def test_fingerprint_and_describe():
    a = SyntheticGroundingSource("mini", seed=0)
    assert a.fingerprint == SyntheticGroundingSource("mini", seed=0).fingerprint
    assert len({a.fingerprint, SyntheticGroundingSource("full").fingerprint,
                SyntheticGroundingSource(seed=1).fingerprint, SyntheticRetrievalSource().fingerprint}) == 4
    info = a.describe()
    assert info["generator_version"] == GENERATOR_VERSION and info["num_scenes"] == 200
    assert info["fingerprint"] == a.fingerprint


def test_hard_negatives_are_false_minimal_edits(scenes):
    kinds = set()
    for s in scenes:
        for item in hard_negative_pairs(s):
            kinds.add(item.kind)
            assert item.kind in HARD_NEGATIVE_KINDS and item.negatives
            assert item.positive == s.caption and caption_true(item.positive, s.meta)
            assert len(set(item.negatives)) == len(item.negatives)
            for negative in item.negatives:
                assert negative != item.positive and not caption_true(negative, s.meta), negative
                assert len(parse_mentions(negative)) == len(parse_mentions(item.positive))
                if item.kind == "relation-swap":
                    assert parse_mentions(negative) == parse_mentions(item.positive)
                else:
                    assert parse_relation(negative) == parse_relation(item.positive)
    assert kinds == set(HARD_NEGATIVE_KINDS)
    single = next(s for s in scenes if len(s.meta["objects"]) == 1)
    assert hard_negative_pairs(single) == []


def test_hard_negative_source_indexes_items():
    source = SyntheticHardNegativeSource("mini")
    first = next(iter(source))
    assert source[0] == first and len(source) > 200


def test_retrieval_captions_match_exactly_one_image():
    source = SyntheticRetrievalSource("mini")
    assert len(source) == 200 and len(source.captions) == len(source.text_to_image) == 400
    assert len(set(source.captions)) == 400 and len(set(source.image_ids)) == 200
    metas = [source.scene(i).meta for i in range(len(source))]
    for t, caption in enumerate(source.captions):
        matches = [i for i, meta in enumerate(metas) if caption_true(caption, meta)]
        assert matches == [source.text_to_image[t]], caption
        assert len(parse_mentions(caption)) == len({(o["colour"], o["shape"]) for o in metas[matches[0]]["objects"]})
    item = source[3]
    assert [source.text_to_image[t] for t in item.caption_ids] == [3, 3]
    assert item.captions == tuple(source.captions[t] for t in item.caption_ids)
    assert item.image_id == source.image_ids[3]


@pytest.mark.parametrize("shape", SHAPES)
def test_shapes_rasterise_to_their_area(shape):
    area = {"circle": math.pi, "oval": math.pi, "square": 4.0, "rectangle": 4.0, "diamond": 2.0,
            "triangle": 2.0, "hexagon": 3 * math.sqrt(3) / 2, "cross": 4.0 * 5 / 9,
            "star": 10 * 0.5 * 0.45 * math.sin(math.radians(36))}[shape]
    geom = ShapeGeometry(shape, 100.0, 90.0, 40.0, 30.0, math.radians(10))
    mask = shape_mask(geom, 200, 180)
    assert mask.sum() == pytest.approx(area * 40 * 30, rel=0.03)


# sha256 of scenes 0..9 of seed 0, per GENERATOR_VERSION
GOLDEN = {"1": "7c1c6585a99b19d4184e7f347836bc7597ed822fd54f837573760699978e4c16"}


def test_output_is_pinned_to_the_generator_version():
    digest = hashlib.sha256()
    for i in range(10):
        s = generate_scene(0, i)
        digest.update(np.asarray(s.image).tobytes() + s.caption.encode() + repr(s.meta).encode())
        for p in s.phrases:
            digest.update(p.text.encode() + b"".join(np.packbits(r.mask).tobytes() for r in p.regions))
    assert digest.hexdigest() == GOLDEN[GENERATOR_VERSION], "output changed: bump GENERATOR_VERSION"
