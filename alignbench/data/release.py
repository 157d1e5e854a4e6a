"""ALIGN-BENCH in the layout of its original release: ``images/<i>.jpg`` + ``pkls/<i>.pkl``.

Each pickle is ``{'caption': str, 'annotation': {phrase: [{'bbox_mask': [x1, y1, x2, y2],
'pixel_mask': bool (H, W)}, ...]}}``. Unpickling can run arbitrary code: only load pickles from a
trusted source, such as the benchmark release itself.

This module also holds the checks shared by every grounding source: :func:`load_image` and
:func:`validate_sample`.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Iterable, NoReturn

import numpy as np
from PIL import Image

from .errors import DataError
from .sample import GroundingSample, Phrase, Region

IMAGE_DIR, IMAGE_SUFFIX = "images", ".jpg"
ANNOTATION_DIR, ANNOTATION_SUFFIX = "pkls", ".pkl"
_LISTED_IDS = 5  # how many ids an error message lists


def sort_sample_ids(ids: Iterable[str]) -> list[str]:
    """Numeric ids in numeric order, then the other ids in string order."""
    return sorted(ids, key=lambda s: (0, int(s), s) if s.isascii() and s.isdigit() else (1, 0, s))


def load_image(fp: Path | IO[bytes], sample_id: str, path: str | Path | None) -> Image.Image:
    """Open an image file or stream and decode it fully; failures are :class:`DataError` naming ``path``."""
    try:
        with Image.open(fp) as image:
            image.load()
    except FileNotFoundError:
        raise DataError("image file is missing", sample_id, path) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"image is unreadable ({exc})", sample_id, path) from exc
    return image


def validate_sample(sample: GroundingSample, path: str | Path | None = None) -> GroundingSample:
    """Check a sample's caption, boxes and masks against its image; return it unchanged.

    A box must be finite, ordered (``x1 <= x2``, ``y1 <= y2``) and inside the image; a mask must
    have the image's ``(H, W)`` shape. ``path`` is the file named in a :class:`DataError`.
    """

    def fail(problem: str) -> NoReturn:
        raise DataError(problem, sample.sample_id, path)

    if not isinstance(sample.caption, str) or not sample.caption.strip():
        fail(f"caption {sample.caption!r} is missing or empty")
    width, height = sample.size_wh
    for phrase in sample.phrases:
        for k, region in enumerate(phrase.regions):
            where = f"phrase {phrase.text!r} region {k}"
            if len(region.box) != 4 or not all(math.isfinite(v) for v in region.box):
                fail(f"{where}: box {list(region.box)} is not 4 finite numbers")
            x1, y1, x2, y2 = region.box
            if x2 < x1 or y2 < y1:
                fail(f"{where}: box {list(region.box)} has x2 < x1 or y2 < y1")
            if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
                fail(f"{where}: box {list(region.box)} lies outside the {width}x{height} image")
            if region.mask is not None and region.mask.shape != (height, width):
                fail(
                    f"{where}: pixel mask has shape {region.mask.shape}, "
                    f"but the image is (H, W) = {(height, width)}"
                )
    return sample


class ReleaseLayoutSource:
    """Grounding samples read from a directory with ``images/`` and ``pkls/``.

    Sample ids are the file stems (numeric ones in numeric order); every image needs a pickle of
    the same stem and vice versa. Samples are validated as they are read.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        images = _stems(self.root / IMAGE_DIR, IMAGE_SUFFIX)
        annotations = _stems(self.root / ANNOTATION_DIR, ANNOTATION_SUFFIX)
        if images != annotations:
            raise DataError(
                f"images without a pickle: {_first(images - annotations)}; "
                f"pickles without an image: {_first(annotations - images)}",
                path=self.root,
            )
        self._ids = tuple(sort_sample_ids(images))
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, index: int) -> GroundingSample:
        sample_id = self._ids[index]
        image_path, pkl = self._files(sample_id)
        image = load_image(image_path, sample_id, image_path)
        raw = _read_pickle(pkl, sample_id)
        caption, phrases = _parse_annotation(raw, sample_id, pkl)
        return validate_sample(GroundingSample(sample_id, image, caption, phrases), pkl)

    @property
    def sample_ids(self) -> tuple[str, ...]:
        return self._ids

    def image_path(self, index: int) -> Path:
        """The image file of sample ``index``."""
        return self._files(self._ids[index])[0]

    def _files(self, sample_id: str) -> tuple[Path, Path]:
        """The image and pickle of a sample."""
        return (
            self.root / IMAGE_DIR / f"{sample_id}{IMAGE_SUFFIX}",
            self.root / ANNOTATION_DIR / f"{sample_id}{ANNOTATION_SUFFIX}",
        )

    @property
    def fingerprint(self) -> str:
        """sha256 over the sorted ``(relative path, size, content sha256)`` of every sample file."""
        if self._fingerprint is None:
            files = sorted(
                (path.relative_to(self.root).as_posix(), path)
                for sample_id in self._ids
                for path in self._files(sample_id)
            )
            with ThreadPoolExecutor() as pool:  # hashlib releases the GIL on large buffers
                stats = list(pool.map(_size_and_sha256, (path for _, path in files)))
            total = hashlib.sha256()
            for (rel, _), (size, digest) in zip(files, stats):
                total.update(f"{rel}\0{size}\0{digest}\n".encode())
            self._fingerprint = total.hexdigest()
        return self._fingerprint

    def describe(self) -> dict:
        return {"format": "release", "root": str(self.root), "n": len(self)}


def _stems(directory: Path, suffix: str) -> set[str]:
    if not directory.is_dir():
        raise DataError(f"expected a directory {directory.name}/ of *{suffix} files", path=directory)
    return {p.stem for p in directory.iterdir() if p.suffix == suffix and p.is_file()}


def _first(ids: set[str]) -> str:
    listed = sort_sample_ids(ids)
    more = f" and {len(listed) - _LISTED_IDS} more" if len(listed) > _LISTED_IDS else ""
    return (", ".join(listed[:_LISTED_IDS]) or "none") + more


def _size_and_sha256(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _read_pickle(path: Path, sample_id: str) -> dict:
    try:
        with path.open("rb") as f:
            raw = pickle.load(f)  # trusted benchmark data, see the module docstring
    except FileNotFoundError:
        raise DataError("annotation pickle is missing", sample_id, path) from None
    except Exception as exc:  # unpickling fails in many ways (EOFError, UnpicklingError, ImportError, ...)
        problem = f"annotation pickle is unreadable ({type(exc).__name__}: {exc})"
        raise DataError(problem, sample_id, path) from exc
    if not isinstance(raw, dict):
        raise DataError(f"annotation pickle holds a {type(raw).__name__}, not a dict", sample_id, path)
    return raw


def _parse_annotation(raw: dict, sample_id: str, path: Path) -> tuple[str, tuple[Phrase, ...]]:
    """Check the structure and types of an annotation dict and turn it into phrases."""

    def fail(problem: str) -> NoReturn:
        raise DataError(problem, sample_id, path)

    caption, annotation = raw.get("caption"), raw.get("annotation")
    if not isinstance(caption, str):
        fail(f"no 'caption' string (found {type(caption).__name__})")
    if not isinstance(annotation, dict):
        fail(f"no 'annotation' dict (found {type(annotation).__name__})")
    phrases = []
    for text, regions in annotation.items():
        if not isinstance(text, str) or not isinstance(regions, (list, tuple)):
            fail(f"phrase {text!r} must be a string mapped to a list of regions")
        parsed = []
        for k, region in enumerate(regions):
            where = f"phrase {text!r} region {k}"
            if not isinstance(region, dict) or "bbox_mask" not in region:
                fail(f"{where} has no 'bbox_mask'")
            box, mask = region["bbox_mask"], region.get("pixel_mask")
            if not isinstance(box, (list, tuple, np.ndarray)) or not all(map(_is_number, box)):
                fail(f"{where}: box {box!r} is not 4 finite numbers")
            if mask is not None and not isinstance(mask, np.ndarray):
                fail(f"{where}: pixel mask is a {type(mask).__name__}, not a numpy array")
            mask = None if mask is None else mask.astype(bool, copy=False)
            parsed.append(Region(tuple(float(v) for v in box), mask))
        phrases.append(Phrase(text, tuple(parsed)))
    return caption, tuple(phrases)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
