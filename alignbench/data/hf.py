"""Grounding data as a Hugging Face ``datasets`` table, and finding a dataset on disk or on the Hub.

One row per sample: ``sample_id``, ``image`` (the original encoded bytes), ``caption`` and
``phrases`` = ``[{text, regions: [{box: [x1, y1, x2, y2], mask: COCO RLE}]}]``.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from functools import partial
from io import BytesIO
from pathlib import Path

import datasets
import pyarrow as pa
from datasets import Features, List, Value
from huggingface_hub import snapshot_download
from huggingface_hub.utils import HfHubHTTPError, LocalEntryNotFoundError

from .errors import DataError, DataNotFoundError
from .release import ANNOTATION_DIR, IMAGE_DIR, ReleaseLayoutSource, load_image, validate_sample
from .rle import decode_mask, encode_mask
from .sample import GroundingSample, Phrase, Region
from .source_base import combined_fingerprint

GROUNDING_FEATURES = Features(
    {
        "sample_id": Value("string"),
        "image": datasets.Image(),
        "caption": Value("string"),
        "phrases": List(
            {
                "text": Value("string"),
                "regions": List(
                    {
                        "box": List(Value("float64"), length=4),
                        "mask": {"size": List(Value("int32")), "counts": Value("string")},
                    }
                ),
            }
        ),
    }
)
NO_MASK = {"size": [0, 0], "counts": ""}  # a region without a pixel mask


class HFGroundingSource:
    """Grounding samples read from a ``datasets.Dataset`` in the :data:`GROUNDING_FEATURES` schema.

    Images are decoded with PIL exactly as stored (no EXIF rotation, unlike ``datasets.Image``), so
    they match the release layout pixel for pixel. Samples are validated as they are read.
    """

    def __init__(self, dataset: datasets.Dataset, *, description: dict) -> None:
        _check_schema(dataset)
        self._dataset = dataset.cast_column("image", datasets.Image(decode=False))
        self._description = dict(description)
        self._ids = tuple(dataset["sample_id"])
        self._fingerprint = combined_fingerprint(dataset._fingerprint, self._description)

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, index: int) -> GroundingSample:
        sample_id = self._ids[index]
        row = self._dataset[index]
        where = self._description.get("root")
        if row["image"]["bytes"] is None:
            raise DataError("image bytes are missing", sample_id, where)
        phrases = tuple(
            Phrase(phrase["text"], tuple(_region(r) for r in phrase["regions"])) for phrase in row["phrases"]
        )
        image = load_image(BytesIO(row["image"]["bytes"]), sample_id, where)
        return validate_sample(GroundingSample(sample_id, image, row["caption"], phrases), where)

    @property
    def sample_ids(self) -> tuple[str, ...]:
        return self._ids

    @property
    def fingerprint(self) -> str:
        """The dataset's ``_fingerprint`` combined with the description."""
        return self._fingerprint

    def describe(self) -> dict:
        return {**self._description, "n": len(self)}


def convert_release_to_hf(src: Path, dst: Path, *, num_proc: int | None = None) -> datasets.Dataset:
    """Validate every sample of a release-layout directory and ``save_to_disk`` it to ``dst``.

    Samples are read by ``num_proc`` processes (default: this one). Images keep their original
    encoded bytes; masks become COCO RLE. Prints the counts and returns the saved dataset.
    """
    source = ReleaseLayoutSource(Path(src))
    read = partial(_release_row, source)
    if num_proc is not None and num_proc > 1:
        with ProcessPoolExecutor(num_proc) as pool:  # a DataError raised in a worker is re-raised here
            rows = list(pool.map(read, range(len(source)), chunksize=8))
    else:
        rows = [read(index) for index in range(len(source))]
    datasets.Dataset.from_list(rows, features=GROUNDING_FEATURES).save_to_disk(str(dst))
    regions = [r for row in rows for phrase in row["phrases"] for r in phrase["regions"]]
    n_masks = sum(r["mask"]["counts"] != "" for r in regions)
    n_phrases = sum(len(row["phrases"]) for row in rows)
    print(
        f"converted {len(rows)} samples ({n_phrases} phrases, {len(regions)} regions, {n_masks} masks) "
        f"from {src} to {dst}"
    )
    return datasets.load_from_disk(str(dst))


def _release_row(source: ReleaseLayoutSource, index: int) -> dict:
    """One validated sample as a :data:`GROUNDING_FEATURES` row."""
    sample = source[index]
    image_path = source.image_path(index)
    return {
        "sample_id": sample.sample_id,
        "image": {"bytes": image_path.read_bytes(), "path": image_path.name},
        "caption": sample.caption,
        "phrases": [
            {
                "text": phrase.text,
                "regions": [
                    {"box": list(r.box), "mask": NO_MASK if r.mask is None else encode_mask(r.mask)}
                    for r in phrase.regions
                ],
            }
            for phrase in sample.phrases
        ],
    }


def _region(row: dict) -> Region:
    mask = row["mask"]
    return Region(tuple(row["box"]), None if mask["counts"] == "" else decode_mask(mask))


def _check_schema(dataset: datasets.Dataset) -> None:
    """The dataset must have the grounding columns, with the grounding storage types."""
    found = dataset.features
    problems = [f"no column {c!r}" for c in GROUNDING_FEATURES if c not in found] + [
        f"column {c!r} is {found[c]}, expected {GROUNDING_FEATURES[c]}"
        for c in GROUNDING_FEATURES
        if c in found and _arrow_type(found, c) != _arrow_type(GROUNDING_FEATURES, c)
    ]
    if problems:
        raise DataError(f"not a grounding dataset (columns found: {list(found)}): {'; '.join(problems)}")


def _arrow_type(features: Features, column: str) -> pa.DataType:
    return Features({column: features[column]}).arrow_schema.field(column).type


def open_grounding_source(
    data_dir: str | Path | None, *, hub_id: str, revision: str, split: str
) -> ReleaseLayoutSource | HFGroundingSource:
    """Open a grounding dataset from ``data_dir`` or, without one, from the Hub snapshot ``hub_id@revision``.

    Recognised layouts (at the top or one directory down): ``images/`` + ``pkls/`` (release), a
    ``save_to_disk`` directory (a ``DatasetDict`` gives ``split``), or ``*.parquet`` files.
    """
    if data_dir is None:
        root, origin = hub_snapshot(hub_id, revision), {"hub_id": hub_id, "revision": revision}
    else:
        root, origin = Path(data_dir).expanduser(), {}
        if not root.is_dir():
            raise DataNotFoundError(hub_id, revision, f"--data-dir {str(root)!r} is not a directory")
    path, layout = find_layout(root)
    if layout == "release":
        return ReleaseLayoutSource(path)
    description = {"format": layout, "root": str(path), "split": split, **origin}
    if layout == "parquet":
        files = [str(f) for f in parquet_files(path, split)]
        dataset = datasets.load_dataset("parquet", data_files=files, split="train")
        return HFGroundingSource(dataset, description=description)
    dataset = datasets.load_from_disk(str(path))
    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise DataError(f"no split {split!r}; the dataset has {list(dataset)}", path=path)
        dataset = dataset[split]
    return HFGroundingSource(dataset, description=description)


def hub_snapshot(hub_id: str, revision: str) -> Path:
    """The local snapshot of a Hub dataset, downloaded or (offline) taken from the cache."""
    try:
        return Path(snapshot_download(repo_id=hub_id, repo_type="dataset", revision=revision))
    except (LocalEntryNotFoundError, HfHubHTTPError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DataNotFoundError(hub_id, revision, f"{type(exc).__name__}: {first_line}") from exc


def find_layout(root: Path) -> tuple[Path, str]:
    """The directory (``root`` or one child) holding a recognised layout, and the layout's name."""
    layout = _layout(root)
    if layout is not None:
        return root, layout
    children = [c for c in sorted(root.iterdir()) if c.is_dir() and not c.name.startswith(".")]
    nested = [(child, found) for child in children if (found := _layout(child)) is not None]
    if len(nested) == 1:
        return nested[0]
    found = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
    problem = (
        f"several datasets: {[str(child.relative_to(root)) for child, _ in nested]}"
        if nested
        else f"no dataset; found {found[:10]}{' ...' if len(found) > 10 else ''}"
    )
    raise DataError(
        f"{problem}; expected {IMAGE_DIR}/ + {ANNOTATION_DIR}/ (release layout), a save_to_disk directory "
        "(dataset_info.json, state.json or dataset_dict.json) or *.parquet files, "
        "at the top or one level down",
        path=root,
    )


def _layout(path: Path) -> str | None:
    if (path / IMAGE_DIR).is_dir() and (path / ANNOTATION_DIR).is_dir():
        return "release"
    if any((path / name).is_file() for name in ("dataset_dict.json", "dataset_info.json", "state.json")):
        return "save_to_disk"
    if any(path.glob("*.parquet")):
        return "parquet"
    return None


def parquet_files(path: Path, split: str) -> list[Path]:
    """The split's parquet files (Hub naming ``<split>-*.parquet``), or all of them if none is so named."""
    files = sorted(path.glob("*.parquet"))
    return [f for f in files if f.stem == split or f.name.startswith(f"{split}-")] or files
