"""Exact rasterisation of the synthetic shapes and backgrounds (numpy only).

A pixel belongs to a shape when its centre ``(x + 0.5, y + 0.5)`` lies inside the shape's
outline; there is no antialiasing, so a shape's mask is exactly the set of pixels painted in
its colour. Rasterising with numpy rather than ``PIL.ImageDraw`` keeps the pixels independent
of the installed Pillow version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RGB = tuple[int, int, int]

SHAPES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "oval", "rectangle", "hexagon", "diamond", "cross",
)

COLOURS: dict[str, RGB] = {
    "red": (220, 30, 30),
    "green": (30, 150, 50),
    "blue": (30, 70, 220),
    "yellow": (245, 215, 20),
    "orange": (245, 130, 20),
    "purple": (130, 50, 170),
    "pink": (245, 130, 190),
    "white": (255, 255, 255),
    "black": (15, 15, 15),
    "brown": (125, 75, 35),
    "gray": (128, 128, 128),
    "cyan": (20, 205, 225),
}

#: Background tones; light and unsaturated so that every object colour stands out.
BACKGROUNDS: dict[str, RGB] = {
    "light gray": (192, 192, 192),
    "beige": (222, 206, 170),
    "pale blue": (178, 198, 222),
}

TEXTURES: tuple[str, ...] = ("plain", "noise", "gradient")

#: Minor/major half-axis ratio of the elongated shapes (1 for the others).
_ASPECT: dict[str, float] = {"oval": 0.6, "rectangle": 0.36, "diamond": 0.7, "hexagon": 1.0}

_STAR = tuple(
    ((1.0 if k % 2 == 0 else 0.45) * math.cos(math.radians(-90 + 36 * k)),
     (1.0 if k % 2 == 0 else 0.45) * math.sin(math.radians(-90 + 36 * k)))
    for k in range(10)
)


@dataclass(frozen=True)
class ShapeGeometry:
    """A shape's outline: centre, half extents along its own axes, and rotation (radians)."""

    shape: str
    cx: float
    cy: float
    half_w: float
    half_h: float
    angle: float = 0.0

    @property
    def radius(self) -> float:
        """A radius that encloses the outline at any rotation."""
        return math.hypot(self.half_w, self.half_h)


def half_extents(shape: str, major: float, vertical: bool) -> tuple[float, float]:
    """Half width and height of ``shape`` whose longer half axis is ``major`` pixels."""
    minor = major * _ASPECT.get(shape, 1.0)
    if shape == "diamond":  # diamonds are always taller than wide
        vertical = True
    return (minor, major) if vertical else (major, minor)


def _in_polygon(u: np.ndarray, v: np.ndarray, vertices: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Even-odd point-in-polygon test, vectorised over the points ``(u, v)``."""
    inside = np.zeros(u.shape, dtype=bool)
    for (x0, y0), (x1, y1) in zip(vertices, vertices[1:] + vertices[:1]):
        if y0 == y1:
            continue
        crosses = (y0 > v) != (y1 > v)
        x_cross = x0 + (v - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (u < x_cross)
    return inside


def _inside_unit(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Membership of normalised points (the outline spans ``[-1, 1]`` on both axes)."""
    au, av = np.abs(u), np.abs(v)
    if shape in ("circle", "oval"):
        return u * u + v * v <= 1.0
    if shape in ("square", "rectangle"):
        return (au <= 1.0) & (av <= 1.0)
    if shape == "diamond":
        return au + av <= 1.0
    if shape == "triangle":  # apex up (image y grows downwards)
        return (v <= 1.0) & (v >= 2.0 * au - 1.0)
    if shape == "hexagon":
        return (av <= math.sqrt(3) / 2) & (math.sqrt(3) * au + av <= math.sqrt(3))
    if shape == "cross":
        arm = 1.0 / 3.0
        return ((au <= arm) & (av <= 1.0)) | ((av <= arm) & (au <= 1.0))
    if shape == "star":
        return _in_polygon(u, v, _STAR)
    raise ValueError(f"unknown shape {shape!r}")


def shape_mask(geom: ShapeGeometry, width: int, height: int) -> np.ndarray:
    """Boolean ``(height, width)`` mask of the pixels whose centres lie inside ``geom``."""
    mask = np.zeros((height, width), dtype=bool)
    r = geom.radius
    x0, x1 = max(0, math.floor(geom.cx - r)), min(width, math.ceil(geom.cx + r) + 1)
    y0, y1 = max(0, math.floor(geom.cy - r)), min(height, math.ceil(geom.cy + r) + 1)
    dx = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5 - geom.cx
    dy = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5 - geom.cy
    cos, sin = math.cos(geom.angle), math.sin(geom.angle)
    u = (cos * dx + sin * dy) / geom.half_w
    v = (cos * dy - sin * dx) / geom.half_h
    mask[y0:y1, x0:x1] = _inside_unit(geom.shape, u, v)
    return mask


def background(tone: str, texture: str, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A ``(height, width, 3)`` uint8 background: a plain tone, light noise, or a soft gradient."""
    base = np.array(BACKGROUNDS[tone], dtype=np.int16)
    canvas = np.broadcast_to(base, (height, width, 3)).copy()
    if texture == "noise":
        canvas += rng.integers(-6, 7, size=(height, width, 1), dtype=np.int16)
    elif texture == "gradient":
        horizontal = rng.random() < 0.5
        ramp = np.rint(np.linspace(-12.0, 12.0, width if horizontal else height)).astype(np.int16)
        canvas += ramp[None, :, None] if horizontal else ramp[:, None, None]
    elif texture != "plain":
        raise ValueError(f"unknown texture {texture!r}")
    return canvas.astype(np.uint8)


def bounding_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Tight ``(x1, y1, x2, y2)`` extent of a non-empty mask, exclusive ends, as floats."""
    cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))
