"""Hard-negative (compositional) tasks: does the matching score prefer the true caption?

Every (image, caption) pair of a sample is scored with the model's ``match`` head; a sample's
scores form a matrix ``S[image, caption]``. Metrics:

* ``accuracy``: share of samples whose positive scores **strictly** above every negative
  (a tie counts as wrong, so a constant scorer gets 0, not chance); one image per sample.
* ``accuracy_macro``: the mean of per-group accuracies (ARO: per relation / attribute pair),
  leaving out the groups in ``options.macro_exclude_groups`` (ARO's symmetric relations) and
  groups with fewer than ``options.macro_min_group_size`` samples.
* ``text_score`` / ``image_score`` / ``group_score`` (Winoground, Thrush et al. 2022), with
  ``S[i, c]`` the score of image ``i`` with caption ``c`` and caption ``k`` true for image ``k``:
  text: ``S[0,0] > S[0,1]`` and ``S[1,1] > S[1,0]``; image: ``S[0,0] > S[1,0]`` and
  ``S[1,1] > S[0,1]``; group: both.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from ..data.hard_negative_sources import HardNegativeItem  # importing it registers the data sources
from ..models.base import AlignmentModel, TextBatch
from .base import RunOptions, SampleTask

SINGLE_IMAGE_METRICS = ("accuracy", "accuracy_macro")
WINOGROUND_METRICS = ("text_score", "image_score", "group_score")


OUTCOME_METRICS = {"correct": "accuracy", "text_correct": "text_score", "image_correct": "image_score",
                   "group_correct": "group_score"}  # per-sample flag -> the metric averaging it


def has_tie(scores: np.ndarray) -> bool:
    """Whether a true caption's score equals a score it had to beat (which counts as a miss)."""
    if scores.shape[0] == 1:
        return bool(scores[0, 0] == scores[0, 1:].max())
    return bool(scores[0, 0] in (scores[0, 1], scores[1, 0]) or scores[1, 1] in (scores[1, 0], scores[0, 1]))


def sample_outcome(scores: np.ndarray) -> dict[str, bool]:
    """Correctness of one sample from its score matrix ``[n_images, n_captions]`` (see module doc)."""
    if scores.shape[0] == 1:
        return {"correct": bool(scores[0, 0] > scores[0, 1:].max())}
    if scores.shape != (2, 2):
        raise ValueError(f"expected one image or a 2x2 Winoground matrix, got scores of shape {scores.shape}")
    text = bool(scores[0, 0] > scores[0, 1] and scores[1, 1] > scores[1, 0])
    image = bool(scores[0, 0] > scores[1, 0] and scores[1, 1] > scores[0, 1])
    return {"text_correct": text, "image_correct": image, "group_correct": text and image}


def _mean(flags: list[bool]) -> float | None:
    return float(np.mean(flags)) if flags else None


@dataclass
class HardNegativeExample:
    """One preprocessed sample, produced in DataLoader workers."""

    sample_id: str
    pixel_values: torch.Tensor  # [n_images, 3, S, S]
    captions: tuple[str, ...]
    group: str | None


class HardNegativeDataset(torch.utils.data.Dataset):
    """Samples of a hard-negative source at ``indices``, images transformed once per sample."""

    def __init__(self, source: Any, indices: list[int], transform: Any) -> None:
        self.source, self.indices, self.transform = source, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> HardNegativeExample:
        item: HardNegativeItem = self.source[self.indices[k]]
        pixels = torch.stack([self.transform(im) for im in item.images])
        return HardNegativeExample(item.sample_id, pixels, item.captions, item.group)


@dataclass
class HardNegativeBatch:
    """Images and captions of a batch, each once, and the (image row, caption row) of every pair."""

    sample_ids: list[str]
    groups: list[str | None]
    shapes: list[tuple[int, int]]  # (n_images, n_captions) per sample, pairs in row-major order
    pixel_values: torch.Tensor
    text: TextBatch
    pair_image: torch.Tensor
    pair_text: torch.Tensor

    def _map_tensors(self, fn: Any) -> "HardNegativeBatch":
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        return HardNegativeBatch(**{k: fn(v) if isinstance(v, (torch.Tensor, TextBatch)) else v for k, v in kw.items()})

    def to(self, device: torch.device | str) -> "HardNegativeBatch":
        return self._map_tensors(lambda t: t.to(device, non_blocking=True))

    def pin_memory(self) -> "HardNegativeBatch":
        return self._map_tensors(lambda t: t.pin_memory())


class HardNegativeCollate:
    """Tokenizes every caption of a batch once and lists all (image, caption) pairs (picklable)."""

    def __init__(self, text_processor: Any) -> None:
        self.text_processor = text_processor

    def __call__(self, items: list[HardNegativeExample]) -> HardNegativeBatch:
        pair_image, pair_text, shapes = [], [], []
        image_offset = text_offset = 0
        for it in items:
            n_img, n_cap = it.pixel_values.shape[0], len(it.captions)
            pair_image += [image_offset + i for i in range(n_img) for _ in range(n_cap)]
            pair_text += [text_offset + c for _ in range(n_img) for c in range(n_cap)]
            shapes.append((n_img, n_cap))
            image_offset, text_offset = image_offset + n_img, text_offset + n_cap
        return HardNegativeBatch(
            sample_ids=[it.sample_id for it in items],
            groups=[it.group for it in items],
            shapes=shapes,
            pixel_values=torch.cat([it.pixel_values for it in items]),
            text=self.text_processor([c for it in items for c in it.captions]),
            pair_image=torch.tensor(pair_image, dtype=torch.long),
            pair_text=torch.tensor(pair_text, dtype=torch.long),
        )


def take_rows(text: TextBatch, rows: torch.Tensor) -> TextBatch:
    """The captions ``rows`` of ``text`` (repeats allowed), every per-caption tensor indexed."""
    n = len(text)
    pick = lambda t: t[rows] if isinstance(t, torch.Tensor) and t.shape[:1] == (n,) else t  # noqa: E731
    return TextBatch(
        input_ids=pick(text.input_ids),
        attention_mask=pick(text.attention_mask),
        offsets=pick(text.offsets),
        special=pick(text.special),
        global_index=text.global_index,
        extra={k: pick(v) for k, v in text.extra.items()},
    )


class HardNegativeTask(SampleTask):
    """SugarCrepe, ARO, VALSE, Winoground and the synthetic hard negatives (probe ``hard-negative``)."""

    def __init__(self, config, data_dir=None, options=None) -> None:
        super().__init__(config, data_dir, options)
        unknown = sorted(set(config.metrics) - set(SINGLE_IMAGE_METRICS) - set(WINOGROUND_METRICS))
        if unknown:
            raise ValueError(f"task {config.name!r}: unknown hard-negative metrics {unknown}; "
                             f"known: {[*SINGLE_IMAGE_METRICS, *WINOGROUND_METRICS]}")

    def _option(self, key: str, default: Any) -> Any:
        return self.options.get(key, self.config.options.get(key, default))

    def sample_ids(self) -> list[str]:
        return list(self.source.sample_ids)

    def torch_dataset(self, model: AlignmentModel, indices: list[int]) -> HardNegativeDataset:
        return HardNegativeDataset(self.source, indices, model.image_transform())

    def collate_fn(self, model: AlignmentModel) -> HardNegativeCollate:
        return HardNegativeCollate(model.text_processor())

    def score_batch(self, model: AlignmentModel, batch: HardNegativeBatch, opts: RunOptions) -> list[dict]:
        """All pairs of the batch in one ``match_scores`` call, split back into per-sample matrices."""
        with opts.autocast():
            scores = model.match_scores(batch.pixel_values[batch.pair_image], take_rows(batch.text, batch.pair_text))
        flat = scores.float().cpu().numpy()
        truncated = batch.text.extra.get("truncated")
        truncated = None if truncated is None else truncated.cpu()
        records, start, caption_start = [], 0, 0
        for sid, group, (n_img, n_cap) in zip(batch.sample_ids, batch.groups, batch.shapes):
            matrix = flat[start:start + n_img * n_cap].reshape(n_img, n_cap)
            start += n_img * n_cap
            record = {"sample_id": sid, "group": group, "scores": matrix.tolist(), **sample_outcome(matrix),
                      "tie": has_tie(matrix)}
            if truncated is not None:
                record["captions_truncated"] = int(truncated[caption_start:caption_start + n_cap].sum())
            caption_start += n_cap
            records.append(record)
        return records

    def aggregate(self, records: list[dict]) -> tuple[dict[str, float | None], dict[str, Any]]:
        """The task's metrics, plus counts: samples, ties, truncated captions and per-group metrics."""
        by_group: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
        for r in records:
            for key, metric in OUTCOME_METRICS.items():
                if key in r and r["group"] is not None:
                    by_group[r["group"]][metric].append(r[key])
        excluded = set(self._option("macro_exclude_groups", []))
        min_size = int(self._option("macro_min_group_size", 1))
        macro = [flags["accuracy"] for g, flags in by_group.items()
                 if "accuracy" in flags and g not in excluded and len(flags["accuracy"]) >= min_size]
        values = {metric: _mean([r[key] for r in records if key in r]) for key, metric in OUTCOME_METRICS.items()}
        values["accuracy_macro"] = _mean([np.mean(flags) for flags in macro])
        counts: dict[str, Any] = {
            "samples": len(records),
            "ties": sum(r["tie"] for r in records),
            "captions_truncated": sum(r.get("captions_truncated", 0) for r in records),
            "groups_in_macro": len(macro),
            "by_group": {
                g: {"n": len(next(iter(flags.values()))), **{m: _mean(f) for m, f in flags.items()}}
                for g, flags in sorted(by_group.items())
            },
        }
        return {k: values[k] for k in self.config.metrics}, counts
