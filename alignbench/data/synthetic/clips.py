"""Synthetic clips (``align-bench-synth-video``): the synthetic scenes set in motion.

Clip ``index`` of a seed starts as scene ``index`` exactly (:func:`.scene.draw_scene`: canvas,
objects, background, caption; its first frame is the scene's image), then every object moves
along a straight line at constant speed over the clip's :data:`CLIP_FRAMES` frames. Continuing
the scene's generator, each object draws a direction (uniform angle) and a distance
(:data:`MOTION_RANGE`, a share of the canvas's shorter side); its end point is clamped so the
object stays inside the canvas. Every frame re-draws the objects in the scene's order, so
occlusion changes as they pass, and must keep the scene's guarantees: every object at least
half visible, objects of one colour apart, the caption's relation true. When a frame breaks
one, the motion is drawn again (at most :data:`MOTION_DRAWS` draws), then the last draw's
displacements are halved (at most :data:`MAX_HALVINGS` times; then the clip stands still).
A clip is thus a pure function of ``(seed, index, attempt)`` and both generator versions.
In every frame a phrase's regions are its objects' visible pixels and tight boxes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from alignbench.data.sample import VideoGroundingSample
from alignbench.data.synthetic.captions import relation_holds, render_caption, union_box
from alignbench.data.synthetic.scene import SceneDraw, SceneObject, draw_scene, groups_of, paint, rasterise, scene_phrases

CLIP_GENERATOR_NAME = "align-bench-synth-video"
#: Bump on ANY change to generated clips (motion, frames, metadata); scene changes bump the scene version.
CLIP_GENERATOR_VERSION = "1"

CLIP_FRAMES = 8
MOTION_RANGE = (0.15, 0.4)  # distance travelled over the clip / the canvas's shorter side
MOTION_DRAWS = 8
MAX_HALVINGS = 4


def clip_id(seed: int, index: int, attempt: int = 0) -> str:
    return f"synth-video-{seed}-{index:05d}" + (f"-r{attempt}" if attempt else "")


def _targets(rng: np.random.Generator, draw: SceneDraw) -> list[tuple[float, float]]:
    """Each object's end point: its start moved by a random direction and distance, clamped
    to the positions where the whole object stays on the canvas."""
    side = min(draw.width, draw.height)
    out = []
    for obj in draw.objects:
        angle = 2 * math.pi * float(rng.random())
        distance = (MOTION_RANGE[0] + (MOTION_RANGE[1] - MOTION_RANGE[0]) * float(rng.random())) * side
        r, g = obj.geom.radius, obj.geom
        out.append((min(max(g.cx + distance * math.cos(angle), r), draw.width - r),
                    min(max(g.cy + distance * math.sin(angle), r), draw.height - r)))
    return out


def _relation_kept(draw: SceneDraw, objects: Sequence[SceneObject]) -> bool:
    spec = draw.spec
    if not spec.relation:
        return True
    groups = groups_of(objects)
    a, b = (union_box([o.box for o in groups[m.key]]) for m in spec.mentions[:2])
    return relation_holds(spec.relation, a, b)


def _moving(draw: SceneDraw, targets: list[tuple[float, float]], scale: float) -> list[list[SceneObject]] | None:
    """The objects of every frame with ``scale`` times the displacements, or ``None`` when a
    frame breaks the scene's guarantees."""
    identities = [(o.colour, o.shape) for o in draw.objects]
    sizes = [o.size for o in draw.objects]
    frames = [draw.objects]
    for k in range(1, CLIP_FRAMES):
        f = scale * k / (CLIP_FRAMES - 1)
        geoms = [replace(o.geom, cx=o.geom.cx + f * (tx - o.geom.cx), cy=o.geom.cy + f * (ty - o.geom.cy))
                 for o, (tx, ty) in zip(draw.objects, targets)]
        objects = rasterise(identities, sizes, geoms, draw.width, draw.height)
        if objects is None or not _relation_kept(draw, objects):
            return None
        frames.append(objects)
    return frames


def render_clip(seed: int, index: int, attempt: int = 0, frames: Sequence[int] | None = None) -> VideoGroundingSample:
    """Clip ``index`` of ``seed`` with the frames at ``frames`` (default: all :data:`CLIP_FRAMES`)."""
    picked = list(range(CLIP_FRAMES)) if frames is None else list(frames)
    if any(not 0 <= k < CLIP_FRAMES for k in picked):
        raise ValueError(f"frame indices must lie in 0..{CLIP_FRAMES - 1}, got {picked}")
    draw, rng = draw_scene(seed, index, attempt)
    tries = [(_targets(rng, draw), 1.0) for _ in range(MOTION_DRAWS)]
    tries += [(tries[-1][0], 0.5**k) for k in range(1, MAX_HALVINGS + 1)]
    targets, scale, moving = tries[-1][0], 0.0, [draw.objects] * CLIP_FRAMES
    for candidate, factor in tries:
        found = _moving(draw, candidate, factor)
        if found is not None:
            targets, scale, moving = candidate, factor, found
            break
    w, h = draw.width, draw.height
    meta = {
        **draw.meta(),
        "clip": {
            "generator": CLIP_GENERATOR_NAME,
            "generator_version": CLIP_GENERATOR_VERSION,
            "clip_frames": CLIP_FRAMES,
            "frame_indices": picked,
            "motion_scale": scale,
            "targets": [[round(x, 2), round(y, 2)] for x, y in targets],
            "boxes": [[list(o.box) for o in moving[k]] for k in picked],
        },
    }
    return VideoGroundingSample(
        sample_id=clip_id(seed, index, attempt),
        frames=tuple(paint(draw.canvas.copy(), moving[k]) for k in picked),
        caption=render_caption(draw.spec),
        frame_phrases=tuple(scene_phrases(draw.spec, moving[k], w, h) for k in picked),
        meta=meta,
    )
