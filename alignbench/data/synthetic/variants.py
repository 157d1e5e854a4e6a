"""Variants built from a scene's metadata: hard-negative captions and retrieval captions."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import combinations

from PIL import Image

from alignbench.data.sample import GroundingSample
from alignbench.data.synthetic.captions import REVERSED, CaptionSpec, Mention, render_caption, spec_is_true

HARD_NEGATIVE_KINDS = ("attribute-swap", "relation-swap", "shape-swap")


@dataclass(frozen=True)
class HardNegative:
    """An image, its true caption, and minimally edited captions that are false for it."""

    sample_id: str
    image: Image.Image
    positive: str
    negatives: tuple[str, ...]
    kind: str


def _swap(mentions: Sequence[Mention], changes: dict[int, Mention]) -> tuple[Mention, ...]:
    return tuple(changes.get(k, m) for k, m in enumerate(mentions))


def _attribute_swaps(spec: CaptionSpec) -> Iterator[CaptionSpec]:
    """The colours of two mentions exchanged."""
    ms = spec.mentions
    for i, j in combinations(range(len(ms)), 2):
        if ms[i].colour != ms[j].colour:
            changes = {i: replace(ms[i], colour=ms[j].colour), j: replace(ms[j], colour=ms[i].colour)}
            yield spec.with_mentions(_swap(ms, changes))


def _relation_swaps(spec: CaptionSpec) -> Iterator[CaptionSpec]:
    """The relation reversed ("left of" <-> "right of", "above" <-> "below")."""
    if spec.relation:
        yield replace(spec, relation=REVERSED[spec.relation])


def _shape_swaps(spec: CaptionSpec) -> Iterator[CaptionSpec]:
    """One mention's shape replaced by the shape of another (distractor) mention."""
    shapes = list(dict.fromkeys(m.shape for m in spec.mentions))
    for i, m in enumerate(spec.mentions):
        for shape in shapes:
            if shape != m.shape:
                yield spec.with_mentions(_swap(spec.mentions, {i: replace(m, shape=shape)}))


_EDITS = {"attribute-swap": _attribute_swaps, "relation-swap": _relation_swaps, "shape-swap": _shape_swaps}


def _false_captions(sample: GroundingSample, candidates: Iterable[CaptionSpec]) -> tuple[str, ...]:
    """Distinct captions of the candidates that are false for the scene, in order.

    Size words ("small", "large") are relative, so a negative must be false without them.
    """
    out: list[str] = []
    for spec in candidates:
        if len({m.key for m in spec.mentions}) < len(spec.mentions):
            continue  # two mentions of one group ("a red star and a red star") read oddly
        text = render_caption(spec)
        if text != sample.caption and text not in out and not spec_is_true(spec, sample.meta, sizes=False):
            out.append(text)
    return tuple(out)


def hard_negative_pairs(sample: GroundingSample) -> list[HardNegative]:
    """One item per kind that has at least one valid negative (possibly none)."""
    spec = CaptionSpec.from_dict(sample.meta["caption_spec"])
    items = []
    for kind in HARD_NEGATIVE_KINDS:
        negatives = _false_captions(sample, _EDITS[kind](spec))
        if negatives:
            items.append(HardNegative(sample.sample_id, sample.image, sample.caption, negatives, kind))
    return items


def group_signature(identities: Sequence[tuple[str, str]]) -> frozenset[tuple[str, str, int]]:
    """The scene's ``(colour, shape, count)`` groups."""
    return frozenset((c, s, identities.count((c, s))) for c, s in set(identities))


def retrieval_specs(identities: Sequence[tuple[str, str]]) -> tuple[CaptionSpec, CaptionSpec]:
    """Two paraphrases listing every group: first-drawn first, and in reverse with a lead."""
    keys = list(dict.fromkeys(identities))
    mentions = tuple(Mention(c, s, identities.count((c, s))) for c, s in keys)
    return CaptionSpec(mentions, style="plain"), CaptionSpec(mentions[::-1], style="image")
