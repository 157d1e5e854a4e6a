"""Video data sources: MSR-VTT retrieval and the synthetic video suite.

A video retrieval source has the interface of an image retrieval source (see
:mod:`.retrieval_sources`: ``len``, ``image_ids``, ``captions``, ``text_to_image``,
``fingerprint``, ``describe()``) with clips for images: ``source[i]`` is a
:class:`~alignbench.data.video.ClipRetrievalItem` whose frames are decoded and sampled by
:mod:`alignbench.data.video` (in the DataLoader workers).

MSR-VTT (``dataset.source: msrvtt``), read from ``--data-dir`` or the Hub snapshot
``hub_id@revision``: an annotation file anywhere under the root (``dataset.options.annotations``;
a JSON list of records, JSON Lines, or CSV) with one record per clip holding its id, its
caption(s) (a string or a list) and its video file name, the column names set by
``dataset.fields`` (``video_id``, ``captions``, ``video``); without a video column the file is
``<video_id>.mp4``. Video files are found anywhere under the root by file name.
"""

from __future__ import annotations

import csv
import hashlib
import json
from functools import partial
from pathlib import Path
from typing import Any

from .errors import DataError, DataNotFoundError
from .retrieval_sources import locate
from .source_base import combined_fingerprint
from .sources import DATA_SOURCES, synthetic_options
from .synthetic import SyntheticVideoGroundingSource, SyntheticVideoRetrievalSource
from .video import DEFAULT_FRAMES, ClipRetrievalItem, read_clip, require_av

DEFAULT_FIELDS = {"video_id": "video_id", "captions": "caption", "video": "video"}
VIDEO_SUFFIXES = (".mp4", ".avi", ".webm", ".mkv", ".mov")
_SHOWN = 3


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of an annotation file: a JSON list, JSON Lines (``.jsonl``) or CSV."""
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".csv":
            return list(csv.DictReader(text.splitlines()))
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read the annotation file: {exc}", path=path) from exc
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError("expected a JSON list of records (one per clip)", path=path)
    return data


class MSRVTTSource:
    """MSR-VTT clips with their captions (see the module docstring); ``frames`` per clip."""

    def __init__(self, annotation: Path, root: Path, fields: dict[str, str], frames: int, description: dict[str, Any]) -> None:
        require_av()
        records = read_records(annotation)
        if not records:
            raise DataError("the annotation file holds no clip", path=annotation)
        absent = [f"{role} -> {fields[role]!r}" for role in ("video_id", "captions") if fields[role] not in records[0]]
        if absent:
            raise DataError(
                f"records lack the mapped field(s) {', '.join(absent)}; fields found: {sorted(records[0])}. "
                "Set dataset.fields in the task definition to map them", path=annotation,
            )
        self.frames = frames
        self.image_ids = [str(r[fields["video_id"]]) for r in records]
        self.captions: list[str] = []
        self.text_to_image: list[int] = []
        self._caption_ids: list[tuple[int, ...]] = []
        for i, r in enumerate(records):
            caps = [r[fields["captions"]]] if isinstance(r[fields["captions"]], str) else list(r[fields["captions"]])
            if not caps:
                raise DataError("clip has no caption", self.image_ids[i], annotation)
            self._caption_ids.append(tuple(range(len(self.captions), len(self.captions) + len(caps))))
            self.captions.extend(caps)
            self.text_to_image.extend([i] * len(caps))
        names = [str(r.get(fields["video"]) or f"{vid}.mp4") for r, vid in zip(records, self.image_ids)]
        self._paths = _find_videos(root, names, self.image_ids)
        self._description = {**description, "annotations": str(annotation.relative_to(root)), "frames": frames}
        digest = hashlib.sha256(annotation.read_bytes()).hexdigest()
        self._fingerprint = combined_fingerprint(digest, self._description)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, i: int) -> ClipRetrievalItem:
        clip = self.image_ids[i]
        frames = tuple(read_clip(self._paths[i], self.frames, clip))
        ids = self._caption_ids[i]
        return ClipRetrievalItem(clip, frames, tuple(self.captions[t] for t in ids), ids)

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        return {**self._description, "videos": len(self), "captions": len(self.captions)}


def _find_videos(root: Path, names: list[str], ids: list[str]) -> list[Path]:
    """The file of every clip: ``root/<name>`` or any video file under ``root`` named ``<name>``."""
    by_name = {p.name: p for p in sorted(root.rglob("*")) if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()}
    paths = [root / n if (root / n).is_file() else by_name.get(Path(n).name) for n in names]
    missing = [(i, n) for i, (n, p) in zip(ids, zip(names, paths)) if p is None]
    if missing:
        archives = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.suffix.lower() in (".zip", ".tar", ".gz"))
        hint = f"; archives found there: {archives[:_SHOWN]} (extract them in place)" if archives else ""
        examples = ", ".join(f"{i!r} ({n})" for i, n in missing[:_SHOWN])
        raise DataError(f"{len(missing)} of {len(names)} videos are not under the dataset folder, e.g. {examples}{hint}", path=root)
    return paths  # type: ignore[return-value]


def _frames(dataset: dict[str, Any], options: dict[str, Any]) -> int:
    return int(options.get("frames", dataset.get("options", {}).get("frames", DEFAULT_FRAMES)))


def open_msrvtt(dataset: dict[str, Any], data_dir: str | None, options: dict[str, Any]) -> MSRVTTSource:
    """The MSR-VTT source of a task definition's ``dataset`` block (see the module docstring)."""
    root, origin = locate(dataset, data_dir)
    name = {**dataset.get("options", {}), **options}.get("annotations", "msrvtt_test_1k.json")
    found = sorted(root.rglob(name))
    if not found:
        raise DataNotFoundError(dataset.get("hub_id", dataset["source"]), dataset.get("revision", "main"),
                                f"no annotation file {name!r} under {str(root)!r}")
    fields = {**DEFAULT_FIELDS, **dataset.get("fields", {})}
    description = {"format": "msrvtt", "root": str(root), "split": dataset.get("split", "test"), **origin}
    return MSRVTTSource(found[0], root, fields, _frames(dataset, options), description)


def _open_synthetic(cls: type, dataset: dict[str, Any], data_dir: str | None, options: dict[str, Any]) -> Any:
    """A synthetic video source of class ``cls``; run options override the definition's."""
    return cls(**synthetic_options(dataset, options), frames=_frames(dataset, options))


DATA_SOURCES.register("msrvtt", open_msrvtt)
DATA_SOURCES.register("align-bench-synth-video", partial(_open_synthetic, SyntheticVideoGroundingSource))
DATA_SOURCES.register("align-bench-synth-video-retrieval", partial(_open_synthetic, SyntheticVideoRetrievalSource))
