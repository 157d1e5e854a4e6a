"""Grounding tasks: global-local and local-local map scores against annotated regions.

``box_score`` / ``pixel_score`` are the relevance mass shares of ALIGN-BENCH (see
``alignbench.protocol``); ``pointing_box`` / ``pointing_pixel`` are pointing-game hit rates
(the map's argmax cell centre lies in the region).

Phrase maps (local-local): a model that encodes phrases on their own
(``AlignmentModel.standalone_phrase_maps``, dual encoders) maps each located phrase encoded alone
(:data:`PHRASE_ENCODED_ALONE`); any other sums the phrase's token rows of the caption's maps
(:data:`PHRASE_TOKEN_ROWS`, the ALIGN-BENCH reference). The result's ``map_method.phrase_maps``
records which. Phrases are located by character offsets in the caption either way, so the same
phrases are scored (or counted missing) for every model.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, fields, replace
from typing import Any, Callable

import numpy as np
import torch

from ..data import grounding_sources  # noqa: F401  (registers the refcoco and flickr30k-entities sources)
from ..models.base import AlignmentModel, MapMethod, TextBatch
from ..protocol import Protocol, get_protocol
from ..scoring.grid_masks import GridMasks, prepare_grid_masks
from ..scoring.mask_cache import GridMaskCache
from ..scoring.metrics import mass_share, phrase_maps, pointing_hit
from ..scoring.phrases import locate_phrase, merge_words
from .base import RunOptions, SampleTask

log = logging.getLogger(__name__)

METRIC_KEYS = ("box_score", "pixel_score", "pointing_box", "pointing_pixel")
PHRASE_ENCODED_ALONE = "phrase encoded alone"
PHRASE_TOKEN_ROWS = "sum of phrase token rows"


@dataclass
class GroundingItem:
    """One preprocessed sample, produced in DataLoader workers."""

    sample_id: str
    pixel_values: torch.Tensor
    caption: str
    phrases: list[str]
    masks: GridMasks


class GroundingDataset(torch.utils.data.Dataset):
    """Samples of a grounding source at ``indices``, with image transform and grid masks."""

    def __init__(self, source: Any, indices: list[int], transform: Any, grid: tuple[int, int], protocol: Protocol,
                 masks: Callable[[Any, tuple[int, int], Protocol], GridMasks] = prepare_grid_masks) -> None:
        self.source, self.indices, self.transform, self.grid, self.protocol = source, indices, transform, grid, protocol
        self.masks = masks

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> GroundingItem:
        return self.item(self.source[self.indices[k]])

    def item(self, s: Any) -> GroundingItem:
        """One grounding sample, transformed and with its grid masks."""
        return GroundingItem(
            sample_id=s.sample_id,
            pixel_values=self.transform(s.image),
            caption=s.caption,
            phrases=[p.text for p in s.phrases],
            masks=self.masks(s, self.grid, self.protocol),
        )


@dataclass
class GroundingBatch:
    """A collated batch; tensors move to the device with :meth:`to`."""

    sample_ids: list[str]
    pixel_values: torch.Tensor
    text: TextBatch
    global_box: torch.Tensor
    global_box_hit: torch.Tensor
    global_pixel: torch.Tensor | None
    global_pixel_hit: torch.Tensor | None
    phrase_sample: torch.Tensor
    phrase_weights: torch.Tensor
    phrase_box: torch.Tensor
    phrase_box_hit: torch.Tensor
    phrase_pixel: torch.Tensor | None
    phrase_pixel_hit: torch.Tensor | None
    phrase_labels: list[tuple[int, int, str]]
    missing_phrases: list[list[str]]
    global_regions_used: list[int]
    skipped_background: list[list[tuple[str, int]]]

    def _map_tensors(self, fn: Any) -> "GroundingBatch":
        kw = {}
        for f in fields(self):
            v = getattr(self, f.name)
            kw[f.name] = fn(v) if isinstance(v, (torch.Tensor, TextBatch)) else v
        return GroundingBatch(**kw)

    def to(self, device: torch.device | str) -> "GroundingBatch":
        return self._map_tensors(lambda t: t.to(device, non_blocking=True))

    def pin_memory(self) -> "GroundingBatch":
        return self._map_tensors(lambda t: t.pin_memory())


def _stack_optional(arrays: list[np.ndarray | None]) -> torch.Tensor | None:
    if any(a is None for a in arrays):
        return None
    return torch.from_numpy(np.concatenate(arrays)) if arrays[0].ndim == 3 else torch.from_numpy(np.stack(arrays))


class GroundingCollate:
    """Tokenizes captions, locates phrases by character offsets, stacks masks (picklable)."""

    def __init__(self, text_processor: Any, punctuation: tuple[str, ...]) -> None:
        self.text_processor, self.punctuation = text_processor, punctuation

    def __call__(self, items: list[GroundingItem]) -> GroundingBatch:
        text = self.text_processor([it.caption for it in items])
        L = text.input_ids.shape[1]
        sample_index, weights, labels, missing = [], [], [], []
        keep: list[list[int]] = []  # per item: which annotated phrases were found
        for b, it in enumerate(items):
            positions = [t for t in range(L) if not text.special[b, t]]
            offsets = [tuple(text.offsets[b, t].tolist()) for t in positions]
            words = merge_words(it.caption, offsets, positions, self.punctuation)
            found, lost = [], []
            for pi, phrase in enumerate(it.phrases):
                token_positions = locate_phrase(words, phrase)
                if token_positions is None:
                    lost.append(phrase)
                    continue
                w = torch.zeros(L)
                w[list(token_positions)] = 1.0
                sample_index.append(b)
                weights.append(w)
                labels.append((b, pi, phrase))
                found.append(pi)
            keep.append(found)
            missing.append(lost)
        m = [it.masks for it in items]
        sel = lambda arr, k: None if arr is None else arr[keep[k]]  # noqa: E731
        return GroundingBatch(
            sample_ids=[it.sample_id for it in items],
            pixel_values=torch.stack([it.pixel_values for it in items]),
            text=text,
            global_box=torch.from_numpy(np.stack([x.global_box for x in m])),
            global_box_hit=torch.from_numpy(np.stack([x.global_box_hit for x in m])),
            global_pixel=_stack_optional([x.global_pixel for x in m]),
            global_pixel_hit=_stack_optional([x.global_pixel_hit for x in m]),
            phrase_sample=torch.tensor(sample_index, dtype=torch.long),
            phrase_weights=torch.stack(weights) if weights else torch.zeros(0, L),
            phrase_box=torch.from_numpy(np.concatenate([sel(x.phrase_box, k) for k, x in enumerate(m)])),
            phrase_box_hit=torch.from_numpy(np.concatenate([sel(x.phrase_box_hit, k) for k, x in enumerate(m)])),
            phrase_pixel=_stack_optional([sel(x.phrase_pixel, k) for k, x in enumerate(m)]),
            phrase_pixel_hit=_stack_optional([sel(x.phrase_pixel_hit, k) for k, x in enumerate(m)]),
            phrase_labels=labels,
            missing_phrases=missing,
            global_regions_used=[x.global_regions_used for x in m],
            skipped_background=[[(it.phrases[p], r) for p, r in x.skipped_background] for it, x in zip(items, m)],
        )


def _scores(maps: torch.Tensor, box: torch.Tensor, box_hit: torch.Tensor, pixel: torch.Tensor | None, pixel_hit: torch.Tensor | None) -> dict[str, list[float | None]]:
    """All four metrics for a stack of maps, moved to the host once."""
    n = maps.shape[0]
    out = {"box_score": mass_share(maps, box), "pointing_box": pointing_hit(maps, box_hit)}
    if pixel is not None:
        out["pixel_score"] = mass_share(maps, pixel)
        out["pointing_pixel"] = pointing_hit(maps, pixel_hit)
    host = {k: v.double().cpu().tolist() for k, v in out.items()}
    return {k: host.get(k, [None] * n) for k in METRIC_KEYS}


def mean_or_none(values: list[float | None]) -> float | None:
    """Mean of the values that are neither ``None`` nor NaN (``None`` when there are none)."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else None


class GroundingTask(SampleTask):
    """ALIGN-BENCH-style grounding: probe ``global-local`` or ``local-local``."""

    dataset_class: type[GroundingDataset] = GroundingDataset
    collate_class: type[GroundingCollate] = GroundingCollate

    def __init__(self, config, data_dir=None, options=None) -> None:
        super().__init__(config, data_dir, options)
        proto = dict(config.protocol)
        overrides = {k: v for k, v in proto.items() if k != "preset"}
        overrides.update(self.options.get("protocol", {}))
        self.protocol = get_protocol(proto.get("preset", "reference"), **overrides)
        # the map parameters this task or run sets itself; the others are the map method's family default
        self.map_overrides = {k: getattr(self.protocol, k) for k in ("layer", "head_reduction") if k in overrides}

    @property
    def is_global(self) -> bool:
        return self.config.probe == "global-local"

    def describe_protocol(self) -> dict[str, Any]:
        return self.protocol.as_dict()

    def sample_ids(self) -> list[str]:
        return list(self.source.sample_ids)

    def torch_dataset(self, model: AlignmentModel, indices: list[int]) -> GroundingDataset:
        return self.dataset_class(self.source, indices, model.image_transform(), model.grid_size, self.protocol,
                                  GridMaskCache(self.source.fingerprint))

    def shared_batch_key(self) -> tuple:
        """Both probes on one dataset and protocol read identical batches (one pass, one forward).

        Built from the dataset's definition (not its contents), so grouping opens no data."""
        dataset = json.dumps([self.config.dataset, self.data_dir, self.options], sort_keys=True, default=str)
        return ("grounding", dataset, self.protocol)

    def collate_fn(self, model: AlignmentModel) -> GroundingCollate:
        return self.collate_class(model.text_processor(), self.protocol.punctuation_tokens)

    def map_method(self, opts: RunOptions, model: AlignmentModel) -> MapMethod:
        """``opts.map_method`` with ``model``'s default layer and head reduction for it
        (:meth:`AlignmentModel.default_map_method`: the protocol's last layer and max for
        ``attention``), replaced by those the task definition or ``protocol.*`` options set."""
        return replace(model.default_map_method(opts.map_method), **self.map_overrides)

    def describe_map_method(self, opts: RunOptions, model: AlignmentModel) -> dict[str, Any]:
        """The map method as results record it; the local-local probe adds how its phrase maps
        were made (``phrase_maps``: :data:`PHRASE_ENCODED_ALONE` or :data:`PHRASE_TOKEN_ROWS`)."""
        method = self.map_method(opts, model).as_dict()
        if self.is_global:
            return method
        return {**method, "phrase_maps": PHRASE_ENCODED_ALONE if model.standalone_phrase_maps else PHRASE_TOKEN_ROWS}

    @staticmethod
    def scored_images(batch: GroundingBatch) -> GroundingBatch:
        """The batch of images whose maps are scored (a video batch's frames)."""
        return batch

    def token_maps(self, model: AlignmentModel, batch: GroundingBatch, opts: RunOptions) -> torch.Tensor:
        """Maps of every text position over every scored image, ``[images, L, gh, gw]`` (float)."""
        with opts.autocast():
            maps = model.text_image_maps(batch.pixel_values, batch.text, self.map_method(opts, model))
        return maps.float()

    def phrase_maps(self, model: AlignmentModel, batch: GroundingBatch, opts: RunOptions, token_maps: torch.Tensor | None = None) -> torch.Tensor:
        """Maps of the located phrases, ``[P, gh, gw]`` (float): each phrase encoded alone where
        the model offers it, else the sum of the phrase's token rows (see the module docstring)
        of ``token_maps`` (this batch's :meth:`token_maps`, computed here when not given)."""
        images = self.scored_images(batch)
        if not model.standalone_phrase_maps:
            maps = self.token_maps(model, batch, opts) if token_maps is None else token_maps
            return phrase_maps(maps, images.phrase_sample, images.phrase_weights)
        with opts.autocast():
            maps = self.encoded_phrase_maps(model, batch, [text for _, _, text in images.phrase_labels], self.map_method(opts, model))
        return maps.float()

    def encoded_phrase_maps(self, model: AlignmentModel, batch: GroundingBatch, phrases: list[str], method: MapMethod) -> torch.Tensor:
        """:meth:`AlignmentModel.phrase_image_maps` of the scored images' ``phrases``."""
        return model.phrase_image_maps(batch.pixel_values, batch.phrase_sample, phrases, method)

    def score_batch(self, model: AlignmentModel, batch: GroundingBatch, opts: RunOptions) -> list[dict]:
        images = self.scored_images(batch)
        if self.is_global:
            return self._global_records(self.token_maps(model, batch, opts)[:, images.text.global_index], images)
        return self._local_records(self.phrase_maps(model, batch, opts), images)

    def _global_records(self, gmaps: torch.Tensor, batch: GroundingBatch) -> list[dict]:
        s = _scores(gmaps, batch.global_box, batch.global_box_hit, batch.global_pixel, batch.global_pixel_hit)
        return [
            {
                "sample_id": sid,
                **{k: s[k][b] for k in METRIC_KEYS},
                "regions_used": batch.global_regions_used[b],
                "skipped_background": [list(x) for x in batch.skipped_background[b]],
            }
            for b, sid in enumerate(batch.sample_ids)
        ]

    def _local_records(self, pmaps: torch.Tensor, batch: GroundingBatch) -> list[dict]:
        s = _scores(pmaps, batch.phrase_box, batch.phrase_box_hit, batch.phrase_pixel, batch.phrase_pixel_hit)
        per_sample: list[list[dict]] = [[] for _ in batch.sample_ids]
        for p, (b, pi, text) in enumerate(batch.phrase_labels):
            per_sample[b].append({"phrase": text, "index": pi, **{k: s[k][p] for k in METRIC_KEYS}})
        records = []
        for b, sid in enumerate(batch.sample_ids):
            for phrase in batch.missing_phrases[b]:
                log.warning("sample %s: phrase %r does not occur in its caption; left out", sid, phrase)
            phrases = per_sample[b]
            records.append(
                {
                    "sample_id": sid,
                    **{k: mean_or_none([ph[k] for ph in phrases]) for k in METRIC_KEYS},
                    "phrases": phrases,
                    "missing_phrases": batch.missing_phrases[b],
                }
            )
        return records

    def aggregate(self, records: list[dict]) -> tuple[dict[str, float | None], dict[str, Any]]:
        metrics = {k: mean_or_none([r[k] for r in records]) for k in METRIC_KEYS}
        counts: dict[str, Any] = {"samples": len(records)}
        if self.is_global:
            counts["regions_skipped_background"] = sum(len(r["skipped_background"]) for r in records)
            counts["samples_without_regions"] = sum(r["regions_used"] == 0 for r in records)
        else:
            counts["phrases_scored"] = sum(len(r["phrases"]) for r in records)
            counts["phrases_missing"] = sum(len(r["missing_phrases"]) for r in records)
            counts["samples_without_scored_phrases"] = sum(not r["phrases"] for r in records)
            counts["missing_phrase_examples"] = [
                [r["sample_id"], p] for r in records for p in r["missing_phrases"]
            ][:20]
        return metrics, counts
