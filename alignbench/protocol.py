"""Scoring protocols: every parameter that moves an ALIGN-BENCH number, made explicit.

``REFERENCE`` reproduces the original scripts, quirks included (boxes truncated to ints, a
strict ``> 0.9 W*H`` background filter, pixel masks *counted* rather than unioned, masks
resized bicubic without antialiasing, heads reduced by max, last cross-modal layer).
``V2`` is a corrected variant (float boxes, union masks, area-weighted resizing); its results
live under separately named tasks and are never mixed with reference results.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

BoxCoords = Literal["truncate", "float"]
MaskCombine = Literal["count", "union"]
MaskResize = Literal["bicubic-noaa", "area"]


@dataclass(frozen=True)
class Protocol:
    """Parameters of the grounding scores; recorded verbatim in every result.

    ``layer`` and ``head_reduction`` choose the maps only where the task definition or the run
    sets them; otherwise the map method's family default applies (for ``attention`` the same
    last layer and max; for ``gradcam`` the authors' layer with heads averaged), and the
    result's ``map_method`` records what was used.
    """

    name: str = "reference"
    box_coords: BoxCoords = "truncate"
    background_threshold: float | None = 0.9
    pixel_mask_combine: MaskCombine = "count"
    mask_resize: MaskResize = "bicubic-noaa"
    layer: int = -1
    head_reduction: Literal["max", "mean"] = "max"
    image_size: int | None = None
    punctuation_tokens: tuple[str, ...] = (".", ",")

    def __post_init__(self) -> None:
        _check_choice("box_coords", self.box_coords, ("truncate", "float"))
        _check_choice("pixel_mask_combine", self.pixel_mask_combine, ("count", "union"))
        _check_choice("mask_resize", self.mask_resize, ("bicubic-noaa", "area"))
        _check_choice("head_reduction", self.head_reduction, ("max", "mean"))
        if self.background_threshold is not None and not 0 < self.background_threshold <= 1:
            raise ValueError(f"background_threshold must be in (0, 1] or null, got {self.background_threshold}")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["punctuation_tokens"] = list(self.punctuation_tokens)
        return d

    def with_overrides(self, **overrides: Any) -> "Protocol":
        """A copy with some parameters changed; unknown names are an error."""
        known = set(self.__dataclass_fields__)
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown protocol parameter(s) {unknown}; known: {sorted(known)}")
        if "punctuation_tokens" in overrides:
            overrides["punctuation_tokens"] = tuple(overrides["punctuation_tokens"])
        return replace(self, **overrides)


def _check_choice(field: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"protocol {field} must be one of {choices}, got {value!r}")


REFERENCE = Protocol()
V2 = Protocol(name="v2", box_coords="float", pixel_mask_combine="union", mask_resize="area")

PROTOCOLS: dict[str, Protocol] = {"reference": REFERENCE, "v2": V2}


def get_protocol(name: str, **overrides: Any) -> Protocol:
    """A named protocol preset, optionally with parameters overridden."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose from {sorted(PROTOCOLS)}")
    return PROTOCOLS[name].with_overrides(**overrides) if overrides else PROTOCOLS[name]
