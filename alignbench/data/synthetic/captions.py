"""Caption grammar of the synthetic suite: structured specs, their text, and their truth.

A :class:`CaptionSpec` lists mentions (one per colour+shape group of the scene), an optional
spatial relation between the first two mentions, an optional background, and a style. The
caption text is rendered from the spec, so a variant (hard negative, paraphrase) is a modified
spec rendered again, and its truth for a scene is checked against the scene's metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

NUMBERS = {2: "two", 3: "three", 4: "four"}
RELATIONS = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}
REVERSED = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
#: Styles of a caption without a relation, and with one.
LIST_STYLES = ("plain", "there", "picture", "image")
RELATION_STYLES = ("plain", "copula")

Box = Sequence[float]


@dataclass(frozen=True)
class Mention:
    """All objects of one colour and shape; ``size`` is an optional adjective (singletons only)."""

    colour: str
    shape: str
    count: int = 1
    size: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.colour, self.shape)

    @property
    def phrase(self) -> str:
        """The annotated phrase: the noun phrase without its article (numeral kept)."""
        if self.count == 1:
            return " ".join(w for w in (self.size, self.colour, self.shape) if w)
        plural = self.shape + ("es" if self.shape.endswith("s") else "s")
        return f"{NUMBERS[self.count]} {self.colour} {plural}"

    @property
    def text(self) -> str:
        """The noun phrase as it reads in the caption (with its article)."""
        if self.count > 1:
            return self.phrase
        article = "an" if self.phrase[0] in "aeiou" else "a"
        return f"{article} {self.phrase}"


@dataclass(frozen=True)
class CaptionSpec:
    """What a caption says: ``relation`` holds between ``mentions[0]`` and ``mentions[1]``."""

    mentions: tuple[Mention, ...]
    relation: str | None = None
    background: str | None = None
    style: str = "plain"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (stored in ``GroundingSample.meta['caption_spec']``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaptionSpec:
        mentions = tuple(Mention(**m) for m in data["mentions"])
        return cls(mentions, data["relation"], data["background"], data["style"])

    def with_mentions(self, mentions: Sequence[Mention]) -> CaptionSpec:
        return replace(self, mentions=tuple(mentions))


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _be(mention: Mention) -> str:
    return "is" if mention.count == 1 else "are"


def render_caption(spec: CaptionSpec) -> str:
    """The lower-case caption text of ``spec``."""
    items = [m.text for m in spec.mentions]
    first = spec.mentions[0]
    if spec.relation:
        copula = f"{_be(first)} " if spec.style == "copula" else ""
        main, rest = f"{items[0]} {copula}{RELATIONS[spec.relation]} {items[1]}", items[2:]
    else:
        lead = {"plain": "", "there": f"there {_be(first)} ", "picture": "a picture of ",
                "image": "an image with "}[spec.style]
        main, rest = lead + _join(items), []
    if spec.background:
        main += f" on a {spec.background} background"
    text = main + "."
    if rest:
        text += f" there {_be(spec.mentions[2])} also {_join(rest)}."
    return text


def background_phrase(tone: str) -> str:
    return f"{tone} background"


def caption_words(text: str) -> list[str]:
    """Whitespace-separated words, lower-cased, without trailing '.' and ','."""
    return [w.lower().rstrip(".,") for w in text.split()]


def find_phrase(caption: str, phrase: str) -> int | None:
    """Word index of the first whole-word occurrence of ``phrase`` in ``caption``, else None."""
    words, target = caption_words(caption), caption_words(phrase)
    for i in range(len(words) - len(target) + 1):
        if words[i : i + len(target)] == target:
            return i
    return None


def union_box(boxes: Sequence[Box]) -> tuple[float, float, float, float]:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes))


def relation_holds(relation: str, a: Box, b: Box) -> bool:
    """Whether box ``a`` is strictly (no shared pixel row/column) ``relation`` box ``b``."""
    return {
        "left of": a[2] <= b[0],
        "right of": b[2] <= a[0],
        "above": a[3] <= b[1],
        "below": b[3] <= a[1],
    }[relation]


def group_boxes(objects: Sequence[dict], key: tuple[str, str]) -> list[Box]:
    """Boxes of the scene objects (``meta['objects']`` entries) with colour and shape ``key``."""
    return [o["box"] for o in objects if (o["colour"], o["shape"]) == key]


def spec_is_true(spec: CaptionSpec, meta: dict, *, sizes: bool = True) -> bool:
    """Whether every statement of ``spec`` holds for the scene described by ``meta``.

    Counts are exact ("a red circle" is false with two red circles), a size adjective must
    match every object of its group (unless ``sizes`` is False: size words are then ignored),
    and a relation compares the groups' union boxes.
    """
    objects = meta["objects"]
    for m in spec.mentions:
        group = [o for o in objects if (o["colour"], o["shape"]) == m.key]
        wrong_size = sizes and m.size and any(o["size"] != m.size for o in group)
        if len(group) != m.count or wrong_size:
            return False
    if spec.background and spec.background != meta["background"]["tone"]:
        return False
    if spec.relation:
        a, b = (union_box(group_boxes(objects, m.key)) for m in spec.mentions[:2])
        return relation_holds(spec.relation, a, b)
    return True
