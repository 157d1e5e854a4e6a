"""Grounding data from outside ALIGN-BENCH, read into :class:`GroundingSample` objects.

* ``refcoco`` (RefCOCO, RefCOCO+, RefCOCOg in the ``lmms-lab/RefCOCO*`` parquet schema): one
  row per referred object with ``image``, ``answer`` (the object's referring expressions, a
  list), ``segmentation`` (a COCO polygon, flat ``[x1, y1, x2, y2, ...]`` or a list of
  polygons), ``bbox`` (COCO ``[x, y, w, h]``) and ``question_id``; the columns are mapped by
  the task's ``dataset.fields`` (``image``, ``expressions``, ``segmentation``, ``bbox``, ``id``).
  Each referring expression is one sample: the expression is the caption and, whole, its single
  phrase, with one region (the box as ``x1y1x2y2`` and the polygon rasterised with pycocotools).
  Option ``expressions: first`` keeps one sample per object.
* ``flickr30k-entities``: the annotations of GitHub ``BryanPlummer/flickr30k_entities``
  (``Sentences/<id>.txt``, ``Annotations/<id>.xml``, ``<split>.txt``) in ``--data-dir`` with
  the Flickr30k images in ``flickr30k-images/`` (or ``flickr30k_images/``, ``images/`` or the
  option ``images_dir``). One sample per caption; its phrases are the bracketed phrases whose
  coreference chain has boxes (``notvisual``, scene and no-box chains are left out and counted
  in ``meta``); a phrase's regions are all boxes of its chain. Boxes only: pixel metrics are
  ``None``. The XML boxes are 1-based and inclusive, read as ``(xmin - 1, ymin - 1, xmax, ymax)``
  in 0-based pixels with exclusive ends.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from io import BytesIO
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from pycocotools import mask as coco_mask

from .errors import DataError, DataNotFoundError
from .release import load_image, validate_sample
from .retrieval_sources import find_table, locate
from .sample import GroundingSample, Phrase, Region
from .sources import DATA_SOURCES
from .source_base import IndexedSource, combined_fingerprint

REFCOCO_FIELDS = {"image": "image", "expressions": "answer", "segmentation": "segmentation", "bbox": "bbox", "id": "question_id"}
_PHRASE_EDGE = ".,"  # the grounding task drops these tokens, so phrases drop them too


def phrase_of(expression: str) -> str:
    """The phrase of a whole expression: its words without leading/trailing ``.`` and ``,``."""
    return " ".join(w for w in (w.strip(_PHRASE_EDGE) for w in expression.split()) if w)


def polygon_mask(segmentation: list, height: int, width: int) -> np.ndarray | None:
    """Rasterise a COCO polygon (flat list) or list of polygons; ``None`` when there is none."""
    polygons = segmentation if segmentation and isinstance(segmentation[0], (list, tuple, np.ndarray)) else [segmentation]
    polygons = [[float(v) for v in p] for p in polygons if p is not None and len(p) >= 6]
    if not polygons:
        return None
    rle = coco_mask.merge(coco_mask.frPyObjects(polygons, height, width))
    return np.ascontiguousarray(coco_mask.decode(rle), dtype=bool)


def xywh_box(bbox: list[float], width: int, height: int) -> tuple[float, float, float, float]:
    """COCO ``[x, y, w, h]`` as ``(x1, y1, x2, y2)``, clipped to the image (COCO boxes may
    overshoot the border by float rounding)."""
    x, y, w, h = (float(v) for v in bbox)
    return (max(0.0, x), max(0.0, y), min(float(width), x + w), min(float(height), y + h))


class RefCOCOSource(IndexedSource):
    """Referring expressions with their object's box and mask (see the module docstring)."""

    def __init__(self, dataset: datasets.Dataset, fields: dict[str, str], *, description: dict[str, Any],
                 expressions: str = "all") -> None:
        missing = [f"{role} -> {col!r}" for role, col in fields.items() if col not in dataset.column_names]
        if missing:
            raise DataError(
                f"referring-expression dataset lacks the mapped column(s) {', '.join(missing)}; columns found: "
                f"{dataset.column_names}. Set dataset.fields in the task definition to map them",
                path=description.get("root"),
            )
        if expressions not in ("all", "first"):
            raise ValueError(f"option expressions must be 'all' or 'first', got {expressions!r}")
        self._fields = fields
        self._dataset = dataset.cast_column(fields["image"], datasets.Image(decode=False))
        self._description = {**description, "expressions": expressions}
        self._index: list[tuple[int, int]] = []
        self._ids: list[str] = []
        for row, (rid, exprs) in enumerate(zip(dataset[fields["id"]], dataset[fields["expressions"]])):
            exprs = [exprs] if isinstance(exprs, str) else list(exprs)
            for k in range(len(exprs) if expressions == "all" else min(1, len(exprs))):
                self._index.append((row, k))
                self._ids.append(f"{rid}/{k}")
        self._fingerprint = combined_fingerprint(dataset._fingerprint, self._description)

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, index: int) -> GroundingSample:
        row_index, k = self._index[index]
        sample_id, where, f = self._ids[index], self._description.get("root"), self._fields
        row = self._dataset[row_index]
        if not row[f["image"]].get("bytes"):
            raise DataError("image bytes are missing", sample_id, where)
        image = load_image(BytesIO(row[f["image"]]["bytes"]), sample_id, where).convert("RGB")
        exprs = row[f["expressions"]]
        expression = exprs if isinstance(exprs, str) else exprs[k]
        width, height = image.size
        try:
            region = Region(xywh_box(row[f["bbox"]], width, height), polygon_mask(row[f["segmentation"]] or [], height, width))
        except (TypeError, ValueError) as exc:
            raise DataError(f"unreadable bbox/segmentation ({exc})", sample_id, where) from exc
        sample = GroundingSample(sample_id, image, expression, (Phrase(phrase_of(expression), (region,)),))
        return validate_sample(sample, where)


_ANNOTATED = re.compile(r"\[/EN#(\d+)((?:/[^\s\]]*)*)\s+([^\]]*)\]")
IMAGE_DIRS = ("flickr30k-images", "flickr30k_images", "images")


def parse_sentence(line: str) -> tuple[str, list[tuple[str, str]]]:
    """A Flickr30k Entities sentence line -> ``(caption, [(chain id, phrase), ...])``."""
    phrases: list[tuple[str, str]] = []

    def keep(m: re.Match) -> str:
        phrases.append((m.group(1), m.group(3)))
        return m.group(3)

    caption = " ".join(_ANNOTATED.sub(keep, line).split())
    return caption, phrases


def parse_boxes(path: Path) -> dict[str, list[tuple[float, float, float, float]]]:
    """Boxes per coreference chain id of an Annotations XML file (0-based, exclusive ends)."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise DataError(f"annotation XML is unreadable ({exc})", path.stem, path) from exc
    boxes: dict[str, list[tuple[float, float, float, float]]] = {}
    for obj in root.iter("object"):
        bnd = obj.find("bndbox")
        if bnd is None:
            continue
        x1, y1, x2, y2 = (float(bnd.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))
        for name in obj.iter("name"):
            boxes.setdefault(name.text.strip(), []).append((x1 - 1, y1 - 1, x2, y2))
    return boxes


class Flickr30kEntitiesSource(IndexedSource):
    """Flickr30k Entities captions with their phrases' boxes (see the module docstring)."""

    def __init__(self, root: Path, split: str, images_dir: Path | None = None) -> None:
        self.root = root
        sentences, annotations = root / "Sentences", root / "Annotations"
        if not sentences.is_dir() or not annotations.is_dir():
            raise DataError("expected Sentences/ and Annotations/ folders of Flickr30k Entities", path=root)
        split_file = root / f"{split}.txt"
        ids = split_file.read_text().split() if split_file.is_file() else sorted(p.stem for p in sentences.glob("*.txt"))
        self.images_dir = images_dir or next((root / d for d in IMAGE_DIRS if (root / d).is_dir()), root / IMAGE_DIRS[0])
        self._lines: list[tuple[str, str]] = []
        for image_id in ids:
            path = sentences / f"{image_id}.txt"
            if not path.is_file():
                raise DataError("sentence file is missing", image_id, path)
            self._lines += [(image_id, line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        self._ids = [f"{image_id}/{n}" for image_id, n in _numbered(self._lines)]
        self._description = {"format": "flickr30k-entities", "root": str(root), "split": split,
                             "split_file": split_file.name if split_file.is_file() else None, "images_dir": str(self.images_dir)}
        listing = "\n".join(f"{i}\t{line}" for i, line in self._lines)
        self._fingerprint = combined_fingerprint(listing, self._description)

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, index: int) -> GroundingSample:
        image_id, line = self._lines[index]
        sample_id = self._ids[index]
        caption, annotated = parse_sentence(line)
        boxes = parse_boxes(self.root / "Annotations" / f"{image_id}.xml")
        image_path = self.images_dir / f"{image_id}.jpg"
        image = load_image(image_path, sample_id, image_path).convert("RGB")
        phrases = tuple(Phrase(text, tuple(Region(b) for b in boxes[chain])) for chain, text in annotated if chain in boxes)
        unboxed = [text for chain, text in annotated if chain not in boxes]
        sample = GroundingSample(sample_id, image, caption, phrases, meta={"phrases_without_boxes": unboxed})
        return validate_sample(sample, self.root / "Annotations" / f"{image_id}.xml")


def _numbered(lines: list[tuple[str, str]]) -> list[tuple[str, int]]:
    """``(image id, index of the caption within its image)`` for each caption line."""
    seen: dict[str, int] = {}
    out = []
    for image_id, _ in lines:
        out.append((image_id, seen.get(image_id, 0)))
        seen[image_id] = out[-1][1] + 1
    return out


def open_refcoco(dataset: dict[str, Any], data_dir: str | None, options: dict[str, Any]) -> RefCOCOSource:
    """A RefCOCO-family source from ``--data-dir`` or the Hub snapshot ``hub_id@revision``."""
    split = dataset.get("split", "val")
    root, origin = locate(dataset, data_dir)
    table = find_table(root, split, dataset.get("hub_id", dataset["source"]), dataset.get("revision", "main"))
    fields = {**REFCOCO_FIELDS, **dataset.get("fields", {})}
    expressions = str({**dataset.get("options", {}), **options}.get("expressions", "all"))
    return RefCOCOSource(table, fields, description={"format": "hf", "root": str(root), "split": split, **origin},
                         expressions=expressions)


def open_flickr30k_entities(dataset: dict[str, Any], data_dir: str | None, options: dict[str, Any]) -> Flickr30kEntitiesSource:
    """Flickr30k Entities from ``--data-dir`` (the annotations are not on the Hub in this schema)."""
    repo, revision = dataset.get("hub_id", "BryanPlummer/flickr30k_entities"), dataset.get("revision", "master")
    if data_dir is None:
        raise DataNotFoundError(
            repo, revision,
            f"Flickr30k Entities is read from a local copy: `git clone https://github.com/{repo}` "
            "(unzip annotations.zip there), put the Flickr30k images (request them at "
            "https://shannon.cs.illinois.edu/DenotationGraph/) in its flickr30k-images/ folder, and pass that "
            "folder as --data-dir",
        )
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(repo, revision, f"--data-dir {str(root)!r} is not a directory")
    images_dir = {**dataset.get("options", {}), **options}.get("images_dir")
    return Flickr30kEntitiesSource(root, dataset.get("split", "test"), Path(images_dir).expanduser() if images_dir else None)


DATA_SOURCES.register("refcoco", open_refcoco)
DATA_SOURCES.register("flickr30k-entities", open_flickr30k_entities)
