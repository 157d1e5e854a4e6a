"""Image-text retrieval data: the Karpathy test splits of Flickr30k (1k) and COCO (5k).

A retrieval source has images (``len``, ``source[i]`` -> :class:`RetrievalItem`), a flat list
of ``captions`` and ``text_to_image`` (the image of each caption), plus ``image_ids``,
``fingerprint`` and ``describe()`` — the interface of
:class:`~alignbench.data.synthetic.SyntheticRetrievalSource`.

Layouts read (``dataset.source: hf-retrieval``):

* a Hub dataset in the ``nlphuji/*_image_text_retrieval`` schema: one row per image with
  ``image``, ``caption`` (the image's captions, a list) and ``filename``; the column names are
  set by the task's ``dataset.fields`` (``image``, ``captions``, ``image_id``). Read from
  ``*.parquet`` files (at any depth; the Hub's parquet conversion stores
  ``<config>/<split>/*.parquet``) or a ``save_to_disk`` folder, from ``--data-dir`` or the Hub
  snapshot ``hub_id@revision``;
* Karpathy's split file (``dataset_coco.json`` / ``dataset_flickr30k.json``:
  ``{"images": [{"filepath", "filename", "split", "sentences": [{"raw"}]}]}``) in
  ``--data-dir`` with the images under ``<data-dir>/<filepath>/<filename>`` or
  ``<data-dir>/images/<filename>``; images of ``dataset.split`` are used.
"""

from __future__ import annotations

import hashlib
import json
from io import BytesIO
from pathlib import Path
from typing import Any

import datasets

from .errors import DataError, DataNotFoundError
from .hf import hub_snapshot
from .release import load_image
from .sources import DATA_SOURCES, synthetic_options
from .synthetic import RetrievalItem, SyntheticRetrievalSource
from .source_base import combined_fingerprint

DEFAULT_FIELDS = {"image": "image", "captions": "caption", "image_id": "filename"}
REQUIRED_FIELDS = ("image", "captions")  # without an image_id column, ids are ``row-<index>``
KARPATHY_GLOB = "dataset_*.json"


class HFRetrievalSource:
    """Images and captions read from a ``datasets.Dataset`` with one row per image."""

    def __init__(self, dataset: datasets.Dataset, fields: dict[str, str], *, description: dict[str, Any],
                 max_captions: int | None = None) -> None:
        missing = [f"{role} -> {fields[role]!r}" for role in REQUIRED_FIELDS if fields[role] not in dataset.column_names]
        if missing:
            raise DataError(
                f"retrieval dataset lacks the mapped column(s) {', '.join(missing)}; columns found: "
                f"{dataset.column_names}. Set dataset.fields in the task definition to map them",
                path=description.get("root"),
            )
        self._fields = fields
        self._dataset = dataset.cast_column(fields["image"], datasets.Image(decode=False))
        self._description = dict(description)
        has_ids = fields["image_id"] in dataset.column_names
        self.image_ids = [str(v) for v in dataset[fields["image_id"]]] if has_ids else [f"row-{i}" for i in range(len(dataset))]
        per_image = [[c] if isinstance(c, str) else list(c) for c in dataset[fields["captions"]]]
        per_image = [c[:max_captions] for c in per_image] if max_captions else per_image
        self._caption_ids: list[tuple[int, ...]] = []
        self.captions: list[str] = []
        self.text_to_image: list[int] = []
        for i, caps in enumerate(per_image):
            if not caps:
                raise DataError("image has no caption", self.image_ids[i], description.get("root"))
            self._caption_ids.append(tuple(range(len(self.captions), len(self.captions) + len(caps))))
            self.captions.extend(caps)
            self.text_to_image.extend([i] * len(caps))
        self._fingerprint = combined_fingerprint(dataset._fingerprint, self._description)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, i: int) -> RetrievalItem:
        image_id = self.image_ids[i]
        cell = self._dataset[i][self._fields["image"]]
        if cell.get("bytes"):
            image = load_image(BytesIO(cell["bytes"]), image_id, self._description.get("root"))
        elif cell.get("path"):
            image = load_image(Path(cell["path"]), image_id, cell["path"])
        else:
            raise DataError("image is missing", image_id, self._description.get("root"))
        ids = self._caption_ids[i]
        return RetrievalItem(image_id, image.convert("RGB"), tuple(self.captions[t] for t in ids), ids)

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        return {**self._description, "images": len(self), "captions": len(self.captions)}


class KarpathySource:
    """The ``split`` images of a Karpathy split file with their image files on disk."""

    def __init__(self, json_path: Path, split: str, max_captions: int | None = None) -> None:
        self.root = json_path.parent
        entries = [e for e in json.loads(json_path.read_text())["images"] if e.get("split") == split]
        if not entries:
            raise DataError(f"no image has split {split!r}", path=json_path)
        self._paths = [self._image_path(e) for e in entries]
        self.image_ids = [str(e["filename"]) for e in entries]
        self.captions, self.text_to_image, self._caption_ids = [], [], []
        for i, e in enumerate(entries):
            caps = [s["raw"] for s in e["sentences"]][:max_captions]
            self._caption_ids.append(tuple(range(len(self.captions), len(self.captions) + len(caps))))
            self.captions.extend(caps)
            self.text_to_image.extend([i] * len(caps))
        self._description = {"format": "karpathy-json", "root": str(self.root), "file": json_path.name, "split": split}
        digest = hashlib.sha256(json_path.read_bytes()).hexdigest()
        self._fingerprint = combined_fingerprint(digest, self._description)

    def _image_path(self, entry: dict) -> Path:
        candidates = [self.root / entry.get("filepath", "") / entry["filename"], self.root / "images" / entry["filename"]]
        return next((p for p in candidates if p.is_file()), candidates[0])

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, i: int) -> RetrievalItem:
        image = load_image(self._paths[i], self.image_ids[i], self._paths[i])
        ids = self._caption_ids[i]
        return RetrievalItem(self.image_ids[i], image.convert("RGB"), tuple(self.captions[t] for t in ids), ids)

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        return {**self._description, "images": len(self), "captions": len(self.captions)}


def find_table(root: Path, split: str, dataset_id: str, revision: str) -> datasets.Dataset:
    """The ``split`` of a ``save_to_disk`` folder or of the ``*.parquet`` files under ``root``.

    Parquet files belong to ``split`` when their stem is ``split`` or starts with ``split-``,
    or their folder is named ``split``; with no such file, all parquet files are read.
    """
    if any((root / n).is_file() for n in ("dataset_dict.json", "dataset_info.json", "state.json")):
        loaded = datasets.load_from_disk(str(root))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise DataError(f"no split {split!r}; the dataset has {list(loaded)}", path=root)
            loaded = loaded[split]
        return loaded
    files = sorted(p for p in root.rglob("*.parquet") if not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise DataNotFoundError(dataset_id, revision, f"no *.parquet files or save_to_disk folder under {str(root)!r}")
    chosen = [f for f in files if f.stem == split or f.name.startswith(f"{split}-") or f.parent.name == split] or files
    return datasets.load_dataset("parquet", data_files=[str(f) for f in chosen], split="train")


def locate(dataset: dict[str, Any], data_dir: str | None) -> tuple[Path, dict[str, Any]]:
    """The local root of a task's data (``data_dir`` or the Hub snapshot) and where it came from."""
    hub_id, revision = dataset.get("hub_id", dataset["source"]), dataset.get("revision", "main")
    if data_dir is None:
        return hub_snapshot(hub_id, revision), {"hub_id": hub_id, "revision": revision}
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(hub_id, revision, f"--data-dir {str(root)!r} is not a directory")
    return root, {"data_dir": str(root)}


def open_retrieval_source(dataset: dict[str, Any], data_dir: str | None, options: dict[str, Any]) -> HFRetrievalSource | KarpathySource:
    """The retrieval source of a task definition's ``dataset`` block (see the module docstring)."""
    split = dataset.get("split", "test")
    ds_options = {**dataset.get("options", {}), **options}
    max_captions = ds_options.get("max_captions_per_image")
    root, origin = locate(dataset, data_dir)
    karpathy = sorted(root.glob(KARPATHY_GLOB))
    if data_dir is not None and karpathy:
        return KarpathySource(karpathy[0], split, max_captions)
    table = find_table(root, split, dataset.get("hub_id", dataset["source"]), dataset.get("revision", "main"))
    fields = {**DEFAULT_FIELDS, **dataset.get("fields", {})}
    description = {"format": "hf", "root": str(root), "split": split, **origin}
    return HFRetrievalSource(table, fields, description=description, max_captions=max_captions)


def _synthetic_retrieval(dataset: dict[str, Any], data_dir: str | None, options: dict[str, Any]) -> SyntheticRetrievalSource:
    return SyntheticRetrievalSource(**synthetic_options(dataset, options))


DATA_SOURCES.register("hf-retrieval", open_retrieval_source)
DATA_SOURCES.register("align-bench-synth-retrieval", _synthetic_retrieval)
