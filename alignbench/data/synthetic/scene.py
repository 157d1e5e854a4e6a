"""Procedural scenes: sampling, rendering, and the :class:`GroundingSample` they become.

Every random choice is drawn, in a fixed order, from ``scene_rng(seed, index)``; reordering
draws, changing a constant below, or changing the rasteriser changes the output and must bump
:data:`GENERATOR_VERSION`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from PIL import Image

from alignbench.data.sample import GroundingSample, Phrase, Region
from alignbench.data.synthetic.captions import (
    LIST_STYLES,
    RELATION_STYLES,
    RELATIONS,
    CaptionSpec,
    Mention,
    background_phrase,
    relation_holds,
    render_caption,
    union_box,
)
from alignbench.data.synthetic.render import (
    BACKGROUNDS,
    COLOURS,
    SHAPES,
    TEXTURES,
    ShapeGeometry,
    background,
    bounding_box,
    half_extents,
    shape_mask,
)

GENERATOR_NAME = "align-bench-synth"
#: Bump on ANY change to generated output (pixels, masks, captions, metadata).
GENERATOR_VERSION = "1"

SIDE_RANGE = (96, 320)  # image width and height, in steps of 8
MAX_ASPECT = 2.5
SIZE_FRACTIONS = {"small": (0.20, 0.28), "large": (0.34, 0.46)}  # longest extent / shorter side
MIN_VISIBLE = 0.5  # share of an object's pixels that occlusion must leave visible
SAME_COLOUR_GAP = 2  # pixels between objects of one colour, so they never merge into a blob
MAX_TILT_DEG = 12.0
P_COUNT, P_DISTRACTOR, P_SIZE_WORD, P_RELATION, P_BACKGROUND = 0.3, 0.6, 0.3, 0.6, 0.2

T = TypeVar("T")
Identity = tuple[str, str]  # (colour, shape)


def scene_rng(seed: int, index: int, attempt: int = 0) -> np.random.Generator:
    """The generator of scene ``index``; ``attempt > 0`` gives deterministic redraws."""
    if seed < 0 or index < 0 or attempt < 0:
        raise ValueError("seed, index and attempt must be non-negative")
    return np.random.default_rng([seed, index] if attempt == 0 else [seed, index, attempt])


def _pick(rng: np.random.Generator, items: Sequence[T]) -> T:
    return items[int(rng.integers(len(items)))]


def _shuffled(rng: np.random.Generator, items: Sequence[T]) -> list[T]:
    out = list(items)
    for i in range(len(out) - 1, 0, -1):
        j = int(rng.integers(i + 1))
        out[i], out[j] = out[j], out[i]
    return out


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(rng.random())


def _sample_canvas(rng: np.random.Generator) -> tuple[int, int]:
    steps = (SIDE_RANGE[1] - SIDE_RANGE[0]) // 8 + 1
    while True:
        w, h = (SIDE_RANGE[0] + 8 * int(rng.integers(steps)) for _ in range(2))
        if max(w, h) <= MAX_ASPECT * min(w, h):
            return w, h


def _new_identity(rng: np.random.Generator, used: list[Identity]) -> Identity:
    """A colour+shape not in ``used``; often a distractor sharing the colour or shape of one."""
    while True:
        if used and rng.random() < P_DISTRACTOR:
            colour, shape = _pick(rng, used)
            if rng.random() < 0.5:
                colour = _pick(rng, list(COLOURS))
            else:
                shape = _pick(rng, SHAPES)
        else:
            colour, shape = _pick(rng, list(COLOURS)), _pick(rng, SHAPES)
        if (colour, shape) not in used:
            return colour, shape


def _sample_identities(rng: np.random.Generator) -> list[Identity]:
    """Colour and shape of every object, in drawing order (later objects occlude earlier)."""
    n = 1 + int(rng.integers(4))
    objects: list[Identity] = []
    used: list[Identity] = []
    if n >= 2 and rng.random() < P_COUNT:
        used.append(_new_identity(rng, used))
        objects += used[-1:] * (2 + int(rng.integers(min(n, 3) - 1)))
    while len(objects) < n:
        used.append(_new_identity(rng, used))
        objects.append(used[-1])
    return _shuffled(rng, objects)


def scene_identities(seed: int, index: int, attempt: int = 0) -> list[Identity]:
    """The objects' colours and shapes of a scene, without rendering it."""
    rng = scene_rng(seed, index, attempt)
    _sample_canvas(rng)
    return _sample_identities(rng)


@dataclass(frozen=True)
class SceneObject:
    """One drawn object: identity, size class, outline, visible pixels and their tight box."""

    colour: str
    shape: str
    size: str
    geom: ShapeGeometry
    mask: np.ndarray  # visible pixels
    box: tuple[float, float, float, float]  # tight extent of ``mask``
    visible_fraction: float


def _sample_geometry(rng: np.random.Generator, shape: str, size: str, w: int, h: int) -> ShapeGeometry:
    major = _uniform(rng, *SIZE_FRACTIONS[size]) * min(w, h) / 2
    half_w, half_h = half_extents(shape, major, vertical=rng.random() < 0.5)
    tilt = 0.0 if shape == "circle" else math.radians(_uniform(rng, -MAX_TILT_DEG, MAX_TILT_DEG))
    r = math.hypot(half_w, half_h)
    return ShapeGeometry(shape, _uniform(rng, r, w - r), _uniform(rng, r, h - r), half_w, half_h, tilt)


def _separated(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether the boxes of two masks are at least :data:`SAME_COLOUR_GAP` pixels apart."""
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = bounding_box(a), bounding_box(b)
    gap = SAME_COLOUR_GAP
    return ax1 + gap <= bx0 or bx1 + gap <= ax0 or ay1 + gap <= by0 or by1 + gap <= ay0


def rasterise(identities: Sequence[Identity], sizes: Sequence[str], geoms: Sequence[ShapeGeometry],
              w: int, h: int) -> list[SceneObject] | None:
    """The objects drawn in order (later ones occlude earlier ones), or ``None`` when one is not
    recognisable: empty, less than :data:`MIN_VISIBLE` of it visible, or near an object of its
    colour (see :data:`SAME_COLOUR_GAP`)."""
    full = [shape_mask(g, w, h) for g in geoms]
    labels = np.full((h, w), -1, dtype=np.int8)
    for k, mask in enumerate(full):
        labels[mask] = k
    areas = [int(np.count_nonzero(m)) for m in full]
    shown = np.bincount(labels.ravel().astype(np.intp) + 1, minlength=len(full) + 1)[1:]  # visible pixels per object
    if min(areas) == 0 or any(v < MIN_VISIBLE * a for v, a in zip(shown, areas)):
        return None
    same = [(i, j) for i in range(len(full)) for j in range(i) if identities[i][0] == identities[j][0]]
    if not all(_separated(full[i], full[j]) for i, j in same):
        return None
    visible = [labels == k for k in range(len(full))]
    return [SceneObject(c, s, z, g, v, bounding_box(v), float(n) / a)
            for (c, s), z, g, v, n, a in zip(identities, sizes, geoms, visible, shown, areas)]


def _layout(rng: np.random.Generator, identities: list[Identity], w: int, h: int) -> list[SceneObject]:
    """Sizes and positions, redrawn until every object stays recognisable under occlusion."""
    while True:
        sizes = [_pick(rng, list(SIZE_FRACTIONS)) for _ in identities]
        geoms = [_sample_geometry(rng, s, z, w, h) for (_, s), z in zip(identities, sizes)]
        objects = rasterise(identities, sizes, geoms, w, h)
        if objects is not None:
            return objects


def paint(canvas: np.ndarray, objects: Sequence[SceneObject]) -> Image.Image:
    """``objects`` painted onto ``canvas`` (modified in place), as an RGB image."""
    for obj in objects:
        canvas[obj.mask] = COLOURS[obj.colour]
    return Image.fromarray(canvas, "RGB")


def groups_of(objects: Sequence[SceneObject]) -> dict[Identity, list[SceneObject]]:
    """The objects by colour and shape, in drawing order."""
    groups: dict[Identity, list[SceneObject]] = {}
    for obj in objects:
        groups.setdefault((obj.colour, obj.shape), []).append(obj)
    return groups


def _sample_spec(rng: np.random.Generator, objects: list[SceneObject], tone: str) -> CaptionSpec:
    """Mentions in random order, maybe a relation (true by the boxes) and a background."""
    groups = groups_of(objects)
    mentions = []
    for (colour, shape), members in groups.items():
        size = members[0].size if len(members) == 1 and rng.random() < P_SIZE_WORD else None
        mentions.append(Mention(colour, shape, len(members), size))
    mentions = _shuffled(rng, mentions)
    boxes = [union_box([o.box for o in groups[m.key]]) for m in mentions]
    candidates = [(i, j, rel) for i in range(len(mentions)) for j in range(len(mentions))
                  for rel in RELATIONS if i != j and relation_holds(rel, boxes[i], boxes[j])]
    relation = None
    if candidates and rng.random() < P_RELATION:
        i, j, relation = _pick(rng, candidates)
        mentions = [mentions[i], mentions[j]] + [m for k, m in enumerate(mentions) if k not in (i, j)]
    named_tone = tone if rng.random() < P_BACKGROUND else None
    style = _pick(rng, RELATION_STYLES if relation else LIST_STYLES)
    return CaptionSpec(tuple(mentions), relation, named_tone, style)


def scene_phrases(spec: CaptionSpec, objects: Sequence[SceneObject], w: int, h: int) -> tuple[Phrase, ...]:
    """The caption's phrases with the regions of ``objects`` (the background phrase: the whole image)."""
    groups = groups_of(objects)
    phrases = [Phrase(m.phrase, tuple(Region(o.box, o.mask) for o in groups[m.key]))
               for m in spec.mentions]
    if spec.background:
        whole = Region((0.0, 0.0, float(w), float(h)), np.ones((h, w), dtype=bool))
        phrases.append(Phrase(background_phrase(spec.background), (whole,)))
    return tuple(phrases)


@dataclass(frozen=True)
class SceneDraw:
    """A scene as drawn from its generator, before painting (see :func:`draw_scene`)."""

    seed: int
    index: int
    attempt: int
    width: int
    height: int
    objects: list[SceneObject]
    tone: str
    texture: str
    canvas: np.ndarray  # the background, (height, width, 3) uint8; paint a copy
    spec: CaptionSpec

    def meta(self) -> dict:
        """The scene's metadata (``GroundingSample.meta``)."""
        spec, relations = self.spec, []
        if spec.relation:
            a, b = spec.mentions[:2]
            relations.append({"subject": a.phrase, "relation": spec.relation, "object": b.phrase})
        return {
            "generator": GENERATOR_NAME,
            "generator_version": GENERATOR_VERSION,
            "seed": self.seed,
            "index": self.index,
            "attempt": self.attempt,
            "background": {"tone": self.tone, "texture": self.texture},
            "objects": [
                {"colour": o.colour, "shape": o.shape, "size": o.size, "box": list(o.box),
                 "visible_fraction": round(o.visible_fraction, 4),
                 "center": [round(o.geom.cx, 2), round(o.geom.cy, 2)],
                 "tilt_deg": round(math.degrees(o.geom.angle), 2)}
                for o in self.objects
            ],
            "relations": relations,
            "caption_spec": spec.to_dict(),
        }


def scene_id(seed: int, index: int, attempt: int = 0) -> str:
    return f"synth-{seed}-{index:05d}" + (f"-r{attempt}" if attempt else "")


def draw_scene(seed: int, index: int, attempt: int = 0) -> tuple[SceneDraw, np.random.Generator]:
    """Every random choice of scene ``index`` of ``seed``, in order, and the generator after
    them (the synthetic video suite draws a clip's motion from it)."""
    rng = scene_rng(seed, index, attempt)
    w, h = _sample_canvas(rng)
    objects = _layout(rng, _sample_identities(rng), w, h)
    tone, texture = _pick(rng, list(BACKGROUNDS)), _pick(rng, TEXTURES)
    canvas = background(tone, texture, w, h, rng)
    spec = _sample_spec(rng, objects, tone)
    return SceneDraw(seed, index, attempt, w, h, objects, tone, texture, canvas, spec), rng


def render_scene(seed: int, index: int, attempt: int = 0) -> GroundingSample:
    """Scene ``index`` of ``seed`` (``attempt`` > 0: a deterministic redraw of that slot)."""
    draw, _ = draw_scene(seed, index, attempt)
    return GroundingSample(
        sample_id=scene_id(seed, index, attempt),
        image=paint(draw.canvas.copy(), draw.objects),
        caption=render_caption(draw.spec),
        phrases=scene_phrases(draw.spec, draw.objects, draw.width, draw.height),
        meta=draw.meta(),
    )


def generate_scene(seed: int, index: int) -> GroundingSample:
    """Scene ``index`` of ``seed``: a pure function of ``(seed, index, GENERATOR_VERSION)``."""
    return render_scene(seed, index)
