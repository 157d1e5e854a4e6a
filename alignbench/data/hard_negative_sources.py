"""Hard-negative (compositional) datasets: one image (two for Winoground) and candidate captions.

Every source yields :class:`HardNegativeItem` objects and registers a builder in
:data:`alignbench.data.sources.DATA_SOURCES` when this module is imported:

* ``hard-negative-hub``: a Hugging Face dataset read with ``datasets.load_dataset(hub_id,
  revision=..., split=...)``, or a local copy given as ``--data-dir`` (a ``save_to_disk`` folder
  or ``*.parquet`` files, at the top, one level down, or in a sub-folder named after the hub
  repository, e.g. ``SugarCrepe_swap_obj/``, so one folder can hold every subset of a suite).
  Columns are taken from the task's ``dataset.fields`` (see :class:`FieldMap`).
* ``aro-official``: ARO's official ``visual_genome_{relation,attribution}.json`` + ``images/``
  (GitHub ``mertyg/vision-language-models-are-bows``), or a hub-layout copy as above.
* ``aro-order-test-cases``: the COCO-/Flickr30k-Order test cases of the official ARO code
  dumped to JSON (the official loader generates the shuffled negatives at load time).
* ``valse``: the official VALSE JSON files (GitHub ``Heidelberg-NLP/VALSE``) + source images.
* ``align-bench-synth-hardneg``: the bundled synthetic generator (offline).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import partial
from io import BytesIO
from pathlib import Path
from typing import Any, Callable

import datasets
from huggingface_hub.errors import GatedRepoError
from PIL import Image

from ..hub_commands import HF_LOGIN_COMMAND
from .errors import DataError, DataNotFoundError
from .hf import find_layout, parquet_files
from .release import load_image
from .sources import DATA_SOURCES, synthetic_options
from .source_base import IndexedSource, combined_fingerprint


@dataclass(frozen=True)
class HardNegativeItem:
    """One test case. With one image, ``captions[0]`` is the positive and ``captions[1:]`` the
    negatives; with two images (Winoground), ``captions[k]`` is the true caption of ``images[k]``.
    ``group`` (a subset, relation, tag...) is used for per-group accuracy."""

    sample_id: str
    images: tuple[Image.Image, ...]
    captions: tuple[str, ...]
    group: str | None = None


class LocalDataRequiredError(DataNotFoundError):
    """A dataset with no verified hub copy: it must be given with ``--data-dir``."""

    def __init__(self, dataset_id: str, revision: str, reason: str) -> None:
        FileNotFoundError.__init__(self, f"dataset {dataset_id!r} has no verified Hugging Face copy: {reason}")
        self.dataset_id, self.revision, self.reason = dataset_id, revision, reason


class GatedDatasetError(DataNotFoundError):
    """A gated hub dataset whose licence was not accepted, or no login."""

    def __init__(self, dataset_id: str, revision: str, reason: str) -> None:
        FileNotFoundError.__init__(
            self,
            f"dataset {dataset_id!r} at revision {revision!r} is gated on the Hugging Face Hub ({reason}).\n"
            f"Accept its licence on https://huggingface.co/datasets/{dataset_id} (logged in, click "
            f"'Access repository'), then log in here with {HF_LOGIN_COMMAND} "
            "or set HF_TOKEN to a token of that account. Or point --data-dir at a local copy.",
        )
        self.dataset_id, self.revision, self.reason = dataset_id, revision, reason


# ---------------------------------------------------------------------------- field mapping


@dataclass(frozen=True)
class FieldMap:
    """Which columns of a table make an item (each value of ``dataset.fields`` is a column name,
    or several separated by commas).

    * ``image``: image column(s), in order (Winoground: ``image_0,image_1``);
    * ``captions``: caption columns, each a string or a list of strings, flattened in order; the
      first ``len(image)`` captions are the true captions of the images, the rest negatives;
    * ``label`` (optional): a column naming the true caption among ``captions`` (a string or a
      ``ClassLabel`` index, as in SugarCrepe's ``true_label``); it becomes the positive;
    * ``id``, ``group``, ``bbox`` (optional): sample id (default: the row index), group for
      per-group accuracy, and an ``{x, y, w, h}`` box (or ``[x, y, w, h]``) the image is cropped to.
    """

    image: tuple[str, ...]
    captions: tuple[str, ...]
    label: str | None = None
    id: str | None = None
    group: str | None = None
    bbox: str | None = None

    @classmethod
    def parse(cls, fields: dict[str, str], where: str) -> "FieldMap":
        unknown = sorted(set(fields) - {"image", "captions", "label", "id", "group", "bbox"})
        missing = [k for k in ("image", "captions") if not fields.get(k)]
        if unknown or missing:
            raise DataError(f"dataset.fields: unknown keys {unknown}, missing keys {missing}", path=where)
        split = lambda v: tuple(c.strip() for c in v.split(",") if c.strip())  # noqa: E731
        return cls(split(fields["image"]), split(fields["captions"]), *(fields.get(k) or None for k in ("label", "id", "group", "bbox")))

    def columns(self) -> list[str]:
        return [*self.image, *self.captions, *(c for c in (self.label, self.id, self.group, self.bbox) if c)]


def _crop(image: Image.Image, box: Any, sample_id: str, where: str | None) -> Image.Image:
    """``image`` cropped to ``(x, y, x + w, y + h)`` as the official ARO loader does (PIL pads a
    box that sticks out with black, as there). A box less than half inside the image is an error:
    it means the boxes do not belong to these images (e.g. images that are already cropped)."""
    x, y, w, h = (box["x"], box["y"], box["w"], box["h"]) if isinstance(box, dict) else box
    inside = max(0, min(x + w, image.width) - max(x, 0)) * max(0, min(y + h, image.height) - max(y, 0))
    if w <= 0 or h <= 0 or inside < 0.5 * w * h:
        raise DataError(
            f"box (x={x}, y={y}, w={w}, h={h}) lies mostly outside the {image.width}x{image.height} image; "
            "if the images are already cropped, leave `bbox` out of dataset.fields (--task-option fields.bbox=)",
            sample_id, where,
        )
    return image.crop((x, y, x + w, y + h))


def _open(value: Any, sample_id: str, where: str | None) -> Image.Image:
    """An undecoded ``datasets.Image`` value (bytes or path) opened with PIL, as RGB."""
    if value is None or (value.get("bytes") is None and value.get("path") is None):
        raise DataError("image is missing", sample_id, where)
    source = BytesIO(value["bytes"]) if value.get("bytes") is not None else value["path"]
    return load_image(source, sample_id, where).convert("RGB")


class TableSource(IndexedSource):
    """Hard-negative items read from a ``datasets.Dataset`` through a :class:`FieldMap`."""

    def __init__(self, dataset: datasets.Dataset, fields: FieldMap, *, description: dict[str, Any]) -> None:
        where = description.get("root") or description.get("hub_id")
        missing = [c for c in fields.columns() if c not in dataset.column_names]
        if missing:
            raise DataError(
                f"columns {missing} named in dataset.fields are not in the dataset (columns: {dataset.column_names}); "
                "fix the task's dataset.fields or override with --task-option fields.KEY=COLUMN",
                path=where,
            )
        for column in fields.image:
            dataset = dataset.cast_column(column, datasets.Image(decode=False))
        self._dataset, self.fields, self._where = dataset, fields, where
        self._labels = dataset.features[fields.label] if fields.label else None
        self._description = dict(description)
        self._ids = tuple(str(v) for v in dataset[fields.id]) if fields.id else tuple(str(i) for i in range(len(dataset)))
        if len(set(self._ids)) != len(self._ids):
            raise DataError(f"sample ids in column {fields.id!r} are not unique", path=where)
        self._fingerprint = combined_fingerprint(dataset._fingerprint, self._description)

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, index: int) -> HardNegativeItem:
        sid, row, f = self._ids[index], self._dataset[index], self.fields
        captions: list[str] = []
        for column in f.captions:
            value = row[column]
            captions.extend([value] if isinstance(value, str) else value)
        if f.label:
            captions = self._positive_first(captions, row[f.label], sid)
        images = [_open(row[c], sid, self._where) for c in f.image]
        if f.bbox:
            images = [_crop(im, row[f.bbox], sid, self._where) for im in images]
        return _checked(HardNegativeItem(sid, tuple(images), tuple(captions), _group(row, f.group)), self._where)

    def _positive_first(self, captions: list[str], label: Any, sid: str) -> list[str]:
        positive = self._labels.int2str(label) if isinstance(self._labels, datasets.ClassLabel) else label
        if positive not in captions:
            raise DataError(f"true caption {positive!r} ({self.fields.label}) is not among the captions {captions}", sid, self._where)
        return [positive, *(c for c in captions if c != positive)]


class ListSource(IndexedSource):
    """Hard-negative items built on access from a list of JSON records (official file layouts)."""

    def __init__(self, records: list[dict], make: Callable[[dict], HardNegativeItem], *, description: dict[str, Any]) -> None:
        self._records, self._make, self._description = records, make, dict(description)
        self._ids = tuple(r["sample_id"] for r in records)
        if len(set(self._ids)) != len(self._ids):
            raise DataError("sample ids are not unique", path=description.get("root"))
        digest = hashlib.sha256(json.dumps(records, sort_keys=True, default=str).encode()).hexdigest()
        self._fingerprint = combined_fingerprint(digest, self._description)

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> HardNegativeItem:
        return _checked(self._make(self._records[index]), self._description.get("root"))


def _group(row: dict, column: str | None) -> str | None:
    return None if column is None or row[column] is None else str(row[column])


def _checked(item: HardNegativeItem, where: str | None) -> HardNegativeItem:
    """One image needs a positive and at least one negative; two images (Winoground) two captions."""
    n_img, n_cap = len(item.images), len(item.captions)
    if not ((n_img == 1 and n_cap >= 2) or (n_img == 2 and n_cap == 2)):
        raise DataError(f"{n_img} image(s) with {n_cap} caption(s) {list(item.captions)}: expected one image with "
                        "a positive and negatives, or two images with two captions", item.sample_id, where)
    if any(not isinstance(c, str) or not c.strip() for c in item.captions):
        raise DataError(f"empty or non-text caption among {list(item.captions)}", item.sample_id, where)
    return item


# ---------------------------------------------------------------------------- hub tables


def _hub_name(hub_id: str) -> str:
    return hub_id.rsplit("/", 1)[-1]


def load_hub_table(dataset: dict[str, Any], data_dir: str | None, also_accepts: str = "") -> tuple[datasets.Dataset, dict[str, Any]]:
    """The split of ``dataset`` (a task definition's ``dataset`` block) from ``data_dir`` or the Hub.

    ``data_dir`` may hold a ``save_to_disk`` folder or ``*.parquet`` files, directly, one level
    down, or in a sub-folder named after the hub repository. Without it, ``datasets.load_dataset``
    reads the hub dataset (from the cache when offline); a missing dataset raises
    :class:`DataNotFoundError` and a gated one :class:`GatedDatasetError`. ``also_accepts``
    describes another layout the caller reads, for the error when ``data_dir`` holds neither.
    """
    hub_id, revision, split = dataset.get("hub_id", dataset["source"]), dataset.get("revision", "main"), dataset.get("split", "test")
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise DataNotFoundError(hub_id, revision, f"--data-dir {str(root)!r} is not a directory")
        if (root / _hub_name(hub_id)).is_dir():
            root = root / _hub_name(hub_id)
        return _read_local(root, split, also_accepts), {"format": "local", "root": str(root), "split": split}
    if "hub_id" not in dataset:
        raise DataError(f"dataset source {dataset['source']!r} needs a hub_id or --data-dir")
    try:
        table = datasets.load_dataset(hub_id, dataset.get("config_name"), revision=revision, split=split)
    except (GatedRepoError, datasets.exceptions.DatasetNotFoundError, ConnectionError, FileNotFoundError) as exc:
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        if isinstance(exc, GatedRepoError) or "gated" in str(exc).lower():
            raise GatedDatasetError(hub_id, revision, reason) from exc
        raise DataNotFoundError(hub_id, revision, reason) from exc
    return table, {"format": "hub", "hub_id": hub_id, "revision": revision, "split": split}


def _read_local(root: Path, split: str, also_accepts: str) -> datasets.Dataset:
    try:
        path, layout = find_layout(root)
    except DataError:
        path, layout = root, None
    if layout not in ("parquet", "save_to_disk"):
        found = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())[:10]
        raise DataError(
            f"no dataset found (entries: {found}); expected a save_to_disk folder or *.parquet files of the hub "
            f"dataset, at the top, one level down or in a sub-folder named after the hub repository"
            + (f", or {also_accepts}" if also_accepts else ""),
            path=root,
        )
    if layout == "parquet":
        return datasets.load_dataset("parquet", data_files=[str(f) for f in parquet_files(path, split)], split="train")
    table = datasets.load_from_disk(str(path))
    if isinstance(table, datasets.DatasetDict):
        if split not in table:
            raise DataError(f"no split {split!r}; the dataset has {list(table)}", path=path)
        table = table[split]
    return table


def _fields(dataset: dict[str, Any], options: dict[str, Any]) -> dict[str, str]:
    """``dataset.fields`` with ``options["fields"]`` and ``options["fields.KEY"]`` overrides."""
    fields = {**dataset.get("fields", {}), **options.get("fields", {})}
    fields.update({k.split(".", 1)[1]: v for k, v in options.items() if k.startswith("fields.")})
    return fields


def hub_source(dataset: dict[str, Any], data_dir: str | None, options: dict[str, Any], also_accepts: str = "") -> TableSource:
    """A hard-negative task's hub dataset (or its local copy) mapped through ``dataset.fields``."""
    table, description = load_hub_table(dataset, data_dir, also_accepts)
    fields = FieldMap.parse(_fields(dataset, options), description.get("root") or description.get("hub_id", ""))
    return TableSource(table, fields, description=description)


# ---------------------------------------------------------------------------- official layouts


def _dataset_name(dataset: dict[str, Any]) -> str:
    return dataset.get("options", {}).get("name") or dataset.get("hub_id") or dataset["source"]


def _required_file(root: Path | None, name: str, dataset: dict[str, Any], layout: str) -> Path:
    """``root/name``, or an error saying which files ``--data-dir`` must hold."""
    missing = "no --data-dir given" if root is None else f"{root / name} is missing"
    if root is None or not (root / name).is_file():
        raise LocalDataRequiredError(_dataset_name(dataset), dataset.get("revision", "main"), f"{missing}; point --data-dir at {layout}")
    return root / name


ARO_VG_LAYOUT = (
    "a folder holding the official ARO files: {file} (the annotation JSON linked from GitHub "
    "mertyg/vision-language-models-are-bows, dataset_zoo/aro_datasets.py) and images/ with the "
    "Visual Genome images it names (the vgr_vga_images.zip archive from the same code), i.e. "
    "<data-dir>/{file} and <data-dir>/images/<image_path>"
)


def aro_official_source(dataset: dict[str, Any], data_dir: str | None, options: dict[str, Any]) -> TableSource | ListSource:
    """ARO VG-Relation / VG-Attribution: the official JSON + images, or a hub-layout copy.

    Each record has ``image_path``, ``bbox_x/y/w/h``, ``true_caption``, ``false_caption`` and
    ``relation_name`` (VG-Relation) or ``attributes`` (VG-Attribution, grouped as ``a_b``); the
    image is cropped to the box. Sample ids are the record's index in the file.
    """
    name = dataset["options"]["official_file"]
    root = None if data_dir is None else Path(data_dir).expanduser()
    layout = ARO_VG_LAYOUT.format(file=name)
    if "hub_id" in dataset and (root is None or not (root / name).is_file()):
        return hub_source(dataset, data_dir, options, also_accepts=layout)
    path = _required_file(root, name, dataset, layout)
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    records = [{**r, "sample_id": str(i)} for i, r in enumerate(raw)]
    return ListSource(records, partial(_aro_item, root, str(path)), description={"format": "aro-official", "root": str(root), "file": name})


def _aro_item(root: Path, where: str, r: dict) -> HardNegativeItem:
    image = load_image(root / "images" / r["image_path"], r["sample_id"], where).convert("RGB")
    box = (r["bbox_x"], r["bbox_y"], r["bbox_w"], r["bbox_h"])
    group = r["relation_name"] if "relation_name" in r else "_".join(r["attributes"][:2])
    return HardNegativeItem(r["sample_id"], (_crop(image, box, r["sample_id"], where),), (r["true_caption"], r["false_caption"]), group)


ORDER_LAYOUT = (
    "a folder holding {file}: a JSON list of the official ARO test cases, {{\"image\": <path relative to --data-dir>, "
    "\"caption_options\": [<true caption>, <4 shuffled captions>]}} (dump `.test_cases` of the "
    "official {cls} dataset of GitHub mertyg/vision-language-models-are-bows, whose shuffled "
    "negatives are drawn at load time), with the images at those paths"
)


def order_test_cases_source(dataset: dict[str, Any], data_dir: str | None, options: dict[str, Any]) -> TableSource | ListSource:
    """COCO-Order / Flickr30k-Order from dumped official test cases, or a hub-layout copy."""
    name, cls = dataset["options"]["official_file"], dataset["options"]["official_class"]
    root = None if data_dir is None else Path(data_dir).expanduser()
    layout = ORDER_LAYOUT.format(file=name, cls=cls)
    if "hub_id" in dataset and (root is None or not (root / name).is_file()):
        return hub_source(dataset, data_dir, options, also_accepts=layout)
    path = _required_file(root, name, dataset, layout)
    with open(path, encoding="utf-8") as f:
        records = [{**r, "sample_id": str(i)} for i, r in enumerate(json.load(f))]
    return ListSource(records, partial(_order_item, root, str(path)), description={"format": "aro-test-cases", "root": str(root), "file": name})


def _order_item(root: Path, where: str, r: dict) -> HardNegativeItem:
    image = load_image(root / r["image"], r["sample_id"], where).convert("RGB")
    return HardNegativeItem(r["sample_id"], (image,), tuple(r["caption_options"]))


VALSE_LAYOUT = (
    "a folder holding the official VALSE JSON files (the data/ folder of GitHub Heidelberg-NLP/VALSE, e.g. "
    "existence.json, plurals.json, counting_hard.json, relation.json, action-replacement.json, ...) "
    "at the top of --data-dir, and each sample's image at images/<dataset>/<image_file>, where "
    "<dataset> and <image_file> are the sample's fields (images from the source datasets: "
    "Visual7W, SWiG, COCO, VisDial, ...)"
)


def valse_source(dataset: dict[str, Any], data_dir: str | None, options: dict[str, Any]) -> ListSource:
    """VALSE: caption vs. foil per sample; the group is the JSON file (the VALSE piece).

    With ``valid_only`` (default, as the VALSE README recommends) only samples where at least two
    of three annotators chose the caption (``mturk.caption >= 2``) are kept.
    """
    root = None if data_dir is None else Path(data_dir).expanduser()
    files = [] if root is None else sorted(root.glob("*.json"))
    if not files:
        missing = "no --data-dir given" if root is None else f"no *.json in {root}"
        raise LocalDataRequiredError(_dataset_name(dataset), dataset.get("revision", "main"), f"{missing}; point --data-dir at {VALSE_LAYOUT}")
    valid_only = bool(options.get("valid_only", dataset.get("options", {}).get("valid_only", True)))
    records = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            for key, r in json.load(f).items():
                if valid_only and (r.get("mturk") or {}).get("caption", 0) < 2:
                    continue
                records.append({"sample_id": key, "piece": path.stem, "dataset": r["dataset"],
                                "image_file": r["image_file"], "caption": r["caption"], "foil": r["foil"]})
    return ListSource(records, partial(_valse_item, root), description={"format": "valse", "root": str(root), "valid_only": valid_only,
                                                                        "files": [p.name for p in files]})


def _valse_item(root: Path, r: dict) -> HardNegativeItem:
    image = load_image(root / "images" / r["dataset"] / r["image_file"], r["sample_id"], str(root)).convert("RGB")
    return HardNegativeItem(r["sample_id"], (image,), (r["caption"], r["foil"]), r["piece"])


# ---------------------------------------------------------------------------- synthetic


class SyntheticHardNegatives:
    """``align-bench-synth-hardneg``: the synthetic generator's items, one per (scene, kind);
    the sample id is ``<scene id>:<kind>`` and the kind is the group."""

    def __init__(self, size: str, seed: int, split: str) -> None:
        from .synthetic import SyntheticHardNegativeSource
        from .synthetic.scene import scene_id

        self._source = SyntheticHardNegativeSource(size=size, seed=seed, split=split)
        seed_ = self._source.scene_seed
        self._ids = tuple(f"{scene_id(seed_, s)}:{k}" for s, k in self._source._items())

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, index: int) -> HardNegativeItem:
        item = self._source[index]
        return HardNegativeItem(f"{item.sample_id}:{item.kind}", (item.image,), (item.positive, *item.negatives), item.kind)

    @property
    def sample_ids(self) -> tuple[str, ...]:
        return self._ids

    @property
    def fingerprint(self) -> str:
        return self._source.fingerprint

    def describe(self) -> dict[str, Any]:
        return {**self._source.describe(), "n": len(self)}


def synthetic_source(dataset: dict[str, Any], data_dir: str | None, options: dict[str, Any]) -> SyntheticHardNegatives:
    return SyntheticHardNegatives(**synthetic_options(dataset, options))


SOURCES: dict[str, Callable[[dict[str, Any], "str | None", dict[str, Any]], Any]] = {
    "hard-negative-hub": hub_source,
    "aro-official": aro_official_source,
    "aro-order-test-cases": order_test_cases_source,
    "valse": valse_source,
    "align-bench-synth-hardneg": synthetic_source,
}
for _name, _builder in SOURCES.items():
    DATA_SOURCES.register(_name, _builder)

__all__ = ["FieldMap", "GatedDatasetError", "HardNegativeItem", "LocalDataRequiredError", "load_hub_table"]
