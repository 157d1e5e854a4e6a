"""``align-bench-synth``: a bundled, deterministic, offline synthetic grounding suite.

Scene grammar. A scene is a canvas of 96..320 pixels per side (steps of 8, aspect ratio at
most 2.5, landscape or portrait) in one of three light background tones (light gray, beige,
pale blue), plain, lightly noisy or with a soft gradient. On it lie 1-4 flat objects, each a
shape (circle, square, triangle, star, oval, rectangle, hexagon, diamond, cross) in one of
twelve fixed colours (:data:`COLOURS`), small or large relative to the shorter side, tilted by
at most 12 degrees. Objects of one colour and shape form a group; a scene may hold one group
of 2-3 identical objects (a count) and distractors that share the colour or the shape of
another group. Objects are drawn in order, later ones occluding earlier ones; every object
keeps at least half of its pixels visible and objects of one colour never touch. Rasterising
tests pixel centres against the exact outline (numpy, no antialiasing), so a region's mask is
exactly the visible pixels painted in the object's colour, and its box is the mask's tight
extent ``(xmin, ymin, xmax + 1, ymax + 1)``.

Captions (all lower-case) mention every group once by colour and shape, so each mention is
unambiguous ("a red circle" when another circle is blue). Singletons read "a red circle" or,
sometimes, "a small red circle"; counts read "two blue squares". A caption is either a list
("there is a red circle, a green star and two blue squares.") or a spatial relation between the
first two mentions, true by their boxes with no shared pixel row/column ("a red circle is to the
left of a green star." + "there is also ..." for the rest). A minority of captions end the first
sentence with "on a beige background".

Phrase convention: a phrase is its mention's noun phrase WITHOUT the article and WITH any size
word or numeral: "red circle", "small red circle", "two blue squares", and "beige background"
(one region, the whole image, which the ALIGN-BENCH background filter skips). Every phrase occurs
exactly once in its caption as whole words (:func:`find_phrase`); a count phrase has one region
per object.

Scenes are a pure function of ``(seed, index, GENERATOR_VERSION)`` via
``numpy.random.default_rng([seed, index])``; see :mod:`.sources` for splits and sizes.

``align-bench-synth-video`` sets the scenes in motion (:mod:`.clips`): clip ``index`` starts as
scene ``index``, keeps its caption and phrases, and has per-frame masks and boxes.
"""

from alignbench.data.synthetic.captions import CaptionSpec, Mention, find_phrase, render_caption, spec_is_true
from alignbench.data.synthetic.clips import CLIP_FRAMES, CLIP_GENERATOR_VERSION, render_clip
from alignbench.data.synthetic.render import BACKGROUNDS, COLOURS, SHAPES
from alignbench.data.synthetic.scene import GENERATOR_NAME, GENERATOR_VERSION, generate_scene
from alignbench.data.synthetic.sources import (
    SIZES,
    SPLITS,
    VIDEO_SIZES,
    RetrievalItem,
    SyntheticGroundingSource,
    SyntheticHardNegativeSource,
    SyntheticRetrievalSource,
    SyntheticVideoGroundingSource,
    SyntheticVideoRetrievalSource,
    split_seed,
)
from alignbench.data.synthetic.variants import HARD_NEGATIVE_KINDS, HardNegative, hard_negative_pairs

__all__ = [
    "BACKGROUNDS", "CLIP_FRAMES", "CLIP_GENERATOR_VERSION", "COLOURS", "GENERATOR_NAME",
    "GENERATOR_VERSION", "HARD_NEGATIVE_KINDS", "SHAPES", "SIZES", "SPLITS", "VIDEO_SIZES",
    "CaptionSpec", "HardNegative", "Mention", "RetrievalItem", "SyntheticGroundingSource",
    "SyntheticHardNegativeSource", "SyntheticRetrievalSource", "SyntheticVideoGroundingSource",
    "SyntheticVideoRetrievalSource", "find_phrase", "generate_scene", "hard_negative_pairs",
    "render_caption", "render_clip", "spec_is_true", "split_seed",
]
