"""Image-text retrieval (probe ``global``): image->text and text->image R@1/5/10 and RSUM.

Ranking. Embeddings of all images and captions are computed in batches, L2-normalised, and
queries are compared with the whole gallery one chunk of ``chunk_size`` queries at a time, so
host and device memory hold at most ``chunk_size x gallery`` similarities, never the full
matrix. The rank of a query is the number of gallery items scoring strictly higher than its
best-scoring ground truth (ties count in the query's favour); an image->text query is a hit at
K when ANY of its captions is in the top K, a text->image query when its one image is.

Two-stage ranking (models with a matching head, capability ``match``): the embedding top-``k``
candidates of every query are re-scored with :meth:`~AlignmentModel.match_scores` and ordered
by that score; a query whose ground truth is not among its candidates keeps its embedding rank
(at least ``k``). ``k`` is a task option (default 16 on CPU, 128 on GPU) and is recorded.
Option ``rerank``: ``auto`` (default: re-rank when the model has ``match``), ``true`` or ``false``.

Resume. With an output folder, embeddings are saved as safetensors shards of ``shard_size``
items under ``<task>.embeddings/`` (with the run key they belong to), so a killed run
recomputes only the missing shards. Per-query records (1-based rank of the ground truth) go to
the task's ``*.samples.jsonl``.

Distributed (see :mod:`alignbench.distributed`): each rank embeds its batches of every shard
and the shard is gathered (every rank then holds the embeddings); re-ranking is split by image
batch and the scores are summed across ranks. Rank 0 writes the shards, records and result.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..data import retrieval_sources  # noqa: F401  (registers the retrieval data sources)
from ..distributed import World, current_world
from ..models.base import AlignmentModel, CapabilityError, require_capabilities
from ..progress import progress_bar
from ..results import RunStore
from ..runner import run_key, result_header, timing
from .base import RunOptions, Task

RECALL_AT = (1, 5, 10)
DEFAULT_K = {"cpu": 16, "cuda": 128}
AUTO_BATCH = {"cpu": 32, "cuda": 256}  # batch size for ``batch_size="auto"``


@dataclass(frozen=True)
class RetrievalSettings:
    """How a retrieval run ranks; ``rerank``/``k`` change results, the sizes do not."""

    rerank: bool
    k: int | None
    batch_size: int
    chunk_size: int = 1024
    shard_size: int = 4096


# ----------------------------------------------------------------------------- ranking


def embedding_ranks(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    query_labels: torch.Tensor,
    gallery_labels: torch.Tensor,
    *,
    chunk_size: int,
    k: int = 0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """0-based rank of each query's best ground truth, and its top-``k`` gallery indices.

    Gallery item ``g`` is a ground truth of query ``q`` when ``gallery_labels[g] ==
    query_labels[q]``. Similarities are dot products (pass normalised embeddings for cosine),
    computed ``chunk_size`` queries at a time on the embeddings' device; results are on the CPU.
    """
    ranks, tops = [], []
    k = min(k, gallery.shape[0])
    for start in range(0, queries.shape[0], chunk_size):
        sims = queries[start : start + chunk_size] @ gallery.T
        positive = query_labels[start : start + chunk_size, None] == gallery_labels[None, :]
        best = sims.masked_fill(~positive, float("-inf")).amax(dim=1)
        ranks.append((sims > best[:, None]).sum(dim=1).cpu())
        if k:
            tops.append(sims.topk(k, dim=1).indices.cpu())
    return torch.cat(ranks), (torch.cat(tops) if k else None)


def rerank(
    first_stage: torch.Tensor,
    candidates: torch.Tensor,
    scores: torch.Tensor,
    query_labels: torch.Tensor,
    gallery_labels: torch.Tensor,
) -> torch.Tensor:
    """0-based ranks after ordering each query's ``candidates`` ``[Q, k]`` by ``scores`` ``[Q, k]``.

    A query without a ground truth among its candidates keeps its first-stage rank (at least k).
    """
    positive = gallery_labels[candidates] == query_labels[:, None]
    best = scores.masked_fill(~positive, float("-inf")).amax(dim=1)
    within = (scores > best[:, None]).sum(dim=1)
    return torch.where(positive.any(dim=1), within, first_stage.clamp(min=candidates.shape[1]))


def recall_metrics(i2t_ranks: torch.Tensor, t2i_ranks: torch.Tensor) -> dict[str, float]:
    """R@1/5/10 in percent for both directions (0-based ranks) and their sum, RSUM."""
    out = {f"{name}_r{k}": 100.0 * (ranks < k).double().mean().item()
           for name, ranks in (("i2t", i2t_ranks), ("t2i", t2i_ranks)) for k in RECALL_AT}
    out["rsum"] = sum(out.values())
    return out


# ----------------------------------------------------------------------------- embeddings


class _Images(torch.utils.data.Dataset):
    """Preprocessed images of a retrieval source at ``indices``."""

    def __init__(self, source: Any, indices: list[int], transform: Callable) -> None:
        self.source, self.indices, self.transform = source, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> torch.Tensor:
        return self.transform(self.source[self.indices[k]].image)


class EmbeddingStore:
    """Normalised embeddings in safetensors shards of ``shard_size`` items (memory only without
    a folder). The folder holds ``key.json``; a different key empties it first.

    Each shard's items are embedded in batches of ``batch_size`` split over the ``world``'s
    ranks and gathered; rank 0 writes the shard files."""

    def __init__(self, directory: Path | None, key: dict[str, Any], shard_size: int, *, resume: bool,
                 batch_size: int, world: World) -> None:
        self.directory, self.shard_size, self.batch_size, self.world = directory, shard_size, batch_size, world
        self.computed = self.resumed = 0
        if directory is not None:
            world.on_main(lambda: self._prepare(directory, key, resume))

    @staticmethod
    def _prepare(directory: Path, key: dict[str, Any], resume: bool) -> None:
        key_path = directory / "key.json"
        stale = not resume or not key_path.exists() or json.loads(key_path.read_text()) != key
        if stale and directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True, exist_ok=True)
        key_path.write_text(json.dumps(key, sort_keys=True))

    def get(self, kind: str, n: int, compute: Callable[[list[int]], torch.Tensor]) -> torch.Tensor:
        """Embeddings of items ``0..n-1`` of ``kind``; ``compute(indices)`` returns raw ones."""
        parts = []
        for shard, start in enumerate(range(0, n, self.shard_size)):
            indices = list(range(start, min(n, start + self.shard_size)))
            path = None if self.directory is None else self.directory / f"{kind}-{shard:05d}.safetensors"
            if path is not None and path.exists():
                emb = load_file(str(path))["embeddings"]
                if emb.shape[0] == len(indices):
                    parts.append(emb)
                    self.resumed += 1
                    continue
            mine = self.world.shard(indices, self.batch_size)
            raw = self.world.gather_batches(compute(mine) if mine else None, len(indices), self.batch_size)
            emb = F.normalize(raw.float(), dim=-1).cpu().contiguous()
            if path is not None and self.world.is_main:
                tmp = path.with_suffix(".tmp")
                save_file({"embeddings": emb}, str(tmp))
                os.replace(tmp, path)
            self.computed += 1
            parts.append(emb)
        return torch.cat(parts)


# ----------------------------------------------------------------------------- task


class RetrievalTask(Task):
    """Image->text and text->image retrieval scored with R@1/5/10 and RSUM."""

    def __init__(self, config, data_dir=None, options=None) -> None:
        super().__init__(config, data_dir, options)
        self._settings: RetrievalSettings | None = None

    def describe_protocol(self) -> dict[str, Any]:
        s = self._settings
        if s is None:
            return {"similarity": "cosine"}
        return {"similarity": "cosine", "rerank": s.rerank, "k": s.k, "ties": "in the query's favour"}

    def settings(self, model: AlignmentModel, model_name: str, opts: RunOptions) -> RetrievalSettings:
        """Resolve the options (task definition defaults, then run options) for ``model``."""
        o = {**self.config.options, **self.options}
        rerank = o.get("rerank", "auto")
        if rerank not in ("auto", True, False):
            raise ValueError(f"task {self.name!r}: option rerank must be auto, true or false, got {rerank!r}")
        has_match = "match" in model.capabilities
        if rerank is True and not has_match:
            raise CapabilityError(f"model {model_name!r} cannot re-rank for task {self.name!r}: it has no matching head (capability 'match')")
        use = has_match if rerank == "auto" else rerank
        device = torch.device(opts.device).type
        k = int(o.get("k", DEFAULT_K.get(device, 128))) if use else None
        if k is not None and k < 1:
            raise ValueError(f"task {self.name!r}: option k must be at least 1, got {k}")
        batch_size = AUTO_BATCH.get(device, 32) if opts.batch_size == "auto" else int(opts.batch_size)
        return RetrievalSettings(use, k, batch_size, int(o.get("chunk_size", 1024)), int(o.get("shard_size", 4096)))

    def run(self, model: AlignmentModel, model_name: str, opts: RunOptions, output_dir: Path | None) -> dict[str, Any]:
        require_capabilities(
            model, model_name, self.name, {"embed"},
            why="retrieval ranks the gallery by global-embedding similarity first (fusion models then "
                "re-rank the top k with their matching head), and it has no 'embed' capability",
        )
        started = time.time()
        self._settings = s = self.settings(model, model_name, opts)
        src = self.source
        n_total = len(src)
        n_images = n_total if opts.limit is None else min(opts.limit, n_total)
        texts = [t for t, i in enumerate(src.text_to_image) if i < n_images]
        query_ids = [f"i2t/{src.image_ids[i]}" for i in range(n_images)] + [f"t2i/{t}" for t in texts]
        dataset_info = self.describe_dataset()
        key = {**run_key(self, model, model_name, opts, dataset_info), "gallery": {"images": n_images, "texts": len(texts)}}
        world = current_world()
        if world.size > 1 and output_dir is None:
            raise ValueError("a distributed run needs an output folder: its ranks exchange embeddings through it")
        store = RunStore(output_dir, model_name, self.name) if output_dir is not None else None
        model.eval()
        forward_s, pairs = 0.0, 0
        with ExitStack() as stack:
            done = world.on_main(lambda: stack.enter_context(store).start(key, resume=opts.resume)) if store is not None else {}
            todo = [q for q in query_ids if q not in done]
            records = dict(done)
            emb_dir = None if store is None else store.dir / f"{store.result_path.stem}.embeddings"
            emb_key = {k: v for k, v in key.items() if k not in ("protocol", "map_method")}
            embeddings = EmbeddingStore(emb_dir, emb_key, s.shard_size, resume=opts.resume, batch_size=s.batch_size, world=world)
            if todo:
                t0 = time.perf_counter()
                new, pairs = self._rank(model, model_name, src, n_images, texts, embeddings, opts, world)
                forward_s = time.perf_counter() - t0
                if store is not None and world.is_main:
                    store.append([r for r in new if r["sample_id"] not in done])
                records.update((r["sample_id"], r) for r in new)
            ordered = [records[q] for q in query_ids]
            ranks = {d: torch.tensor([r["rank"] - 1 for r in ordered if r["direction"] == d]) for d in ("i2t", "t2i")}
            result = result_header(self, model, model_name, opts, dataset_info)
            result.update(
                n_samples=n_images,
                n_samples_total=n_total,
                partial=n_images < n_total,
                metrics=recall_metrics(ranks["i2t"], ranks["t2i"]),
                counts={
                    "images": n_images,
                    "captions": len(texts),
                    "queries": len(query_ids),
                    "rerank_pairs_scored": pairs,
                    "embedding_shards_computed": embeddings.computed,
                    "embedding_shards_resumed": embeddings.resumed,
                },
            )
            result["run"].update(timing(started, forward_s, computed=len(todo)), samples_resumed=len(query_ids) - len(todo),
                                 batch_size_used=s.batch_size, chunk_size=s.chunk_size, shard_size=s.shard_size, world_size=world.size)
            if store is not None:
                result["samples_file"] = store.samples_path.name
                world.on_main(lambda: store.write_result(result))
        return result

    def _rank(self, model: AlignmentModel, model_name: str, src: Any, n_images: int, texts: list[int],
              embeddings: EmbeddingStore, opts: RunOptions, world: World) -> tuple[list[dict[str, Any]], int]:
        """Rank every query of the gallery (images ``0..n_images-1``, captions ``texts``);
        returns the per-query records and the number of pairs the matching head scored."""
        s, device = self._settings, torch.device(opts.device)
        image_labels = torch.arange(n_images)
        text_labels = torch.tensor([src.text_to_image[t] for t in texts])
        img = embeddings.get("image", n_images, lambda idx: self._embed_images(model, src, idx, opts, model_name)).to(device)
        txt = embeddings.get("text", len(texts), lambda idx: self._embed_texts(model, src, [texts[j] for j in idx], opts, model_name)).to(device)
        k = s.k or 0
        i2t, i2t_top = embedding_ranks(img, txt, image_labels.to(device), text_labels.to(device), chunk_size=s.chunk_size, k=k)
        t2i, t2i_top = embedding_ranks(txt, img, text_labels.to(device), image_labels.to(device), chunk_size=s.chunk_size, k=k)
        if not s.rerank:
            return self._records(src, texts, n_images, i2t, t2i, None), 0
        i2t_scores, t2i_scores, pairs = self._match_candidates(model, src, texts, i2t_top, t2i_top, opts, model_name, world)
        final_i2t = rerank(i2t, i2t_top, i2t_scores, image_labels, text_labels)
        final_t2i = rerank(t2i, t2i_top, t2i_scores, text_labels, image_labels)
        return self._records(src, texts, n_images, final_i2t, final_t2i, {"i2t": i2t, "t2i": t2i}), pairs

    # -- model calls ---------------------------------------------------------------------

    def gallery_dataset(self, model: AlignmentModel, src: Any, indices: list[int]) -> torch.utils.data.Dataset:
        """The gallery items at ``indices``, preprocessed for ``model`` (images here; video tasks
        override it to load clips)."""
        return _Images(src, indices, model.image_transform())

    def _loader(self, dataset: Any, opts: RunOptions, collate: Callable | None = None) -> torch.utils.data.DataLoader:
        batch_size = self._settings.batch_size
        return torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, collate_fn=collate, num_workers=opts.workers_for(-(-len(dataset) // batch_size)),
            pin_memory=torch.device(opts.device).type == "cuda",
        )

    def _embed_images(self, model: AlignmentModel, src: Any, indices: list[int], opts: RunOptions, name: str) -> torch.Tensor:
        out = []
        with progress_bar(total=len(indices), desc=f"{name} | {self.name} | images", quiet=opts.quiet) as bar:
            for px in self._loader(self.gallery_dataset(model, src, indices), opts):
                with torch.inference_mode(), opts.autocast():
                    out.append(model.embed_images(px.to(opts.device)).float().cpu())
                bar.update(len(px))
        return torch.cat(out)

    def _embed_texts(self, model: AlignmentModel, src: Any, texts: list[int], opts: RunOptions, name: str) -> torch.Tensor:
        out = []
        captions = [src.captions[t] for t in texts]
        with progress_bar(total=len(captions), desc=f"{name} | {self.name} | captions", quiet=opts.quiet) as bar:
            for batch in self._loader(captions, opts, collate=model.text_processor()):
                with torch.inference_mode(), opts.autocast():
                    out.append(model.embed_texts(batch.to(opts.device)).float().cpu())
                bar.update(len(batch))
        return torch.cat(out)

    def _match_candidates(
        self, model: AlignmentModel, src: Any, texts: list[int], i2t_top: torch.Tensor, t2i_top: torch.Tensor,
        opts: RunOptions, name: str, world: World,
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Matching-head scores of every (query, candidate) pair, each distinct pair scored once.

        Pairs are grouped by image so every image is decoded and transformed once; each rank
        scores the pairs of its image batches and the scores are summed over ranks.
        Returns the ``[Q, k]`` scores of both directions and the number of pairs scored.
        """
        n_images, k = i2t_top.shape
        i2t_pairs = torch.stack([torch.arange(n_images).repeat_interleave(k), i2t_top.reshape(-1)], dim=1)
        t2i_pairs = torch.stack([t2i_top.reshape(-1), torch.arange(len(texts)).repeat_interleave(t2i_top.shape[1])], dim=1)
        unique, inverse = torch.unique(torch.cat([i2t_pairs, t2i_pairs]), dim=0, return_inverse=True)  # sorted by image
        scores = torch.zeros(len(unique))
        images = unique[:, 0].unique().tolist()
        bounds = torch.searchsorted(unique[:, 0].contiguous(), torch.tensor(images + [n_images]))
        mine = world.shard(range(len(images)), self._settings.batch_size)
        text_processor = model.text_processor()
        done = 0
        mine_pairs = sum(int(bounds[b + 1] - bounds[b]) for b in mine)
        with progress_bar(total=mine_pairs, desc=f"{name} | {self.name} | re-rank", quiet=opts.quiet or not world.is_main) as bar:
            for px in self._loader(self.gallery_dataset(model, src, [images[b] for b in mine]), opts):
                batch_images = mine[done : done + len(px)]
                done += len(px)
                rows = torch.cat([torch.arange(bounds[b], bounds[b + 1]) for b in batch_images])
                local = torch.cat([torch.full((int(bounds[b + 1] - bounds[b]),), j) for j, b in enumerate(batch_images)])
                step = self._settings.batch_size
                for start in range(0, len(rows), step):
                    sel, loc = rows[start : start + step], local[start : start + step]
                    text = text_processor([src.captions[texts[t]] for t in unique[sel, 1].tolist()])
                    with torch.inference_mode(), opts.autocast():
                        scores[sel] = model.match_scores(px[loc].to(opts.device), text.to(opts.device)).float().cpu()
                    bar.update(len(sel))
        scores = world.sum(scores)
        i2t_scores = scores[inverse[: len(i2t_pairs)]].view(n_images, k)
        t2i_scores = scores[inverse[len(i2t_pairs) :]].view(len(texts), -1)
        return i2t_scores, t2i_scores, len(unique)

    @staticmethod
    def _records(src: Any, texts: list[int], n_images: int, i2t: torch.Tensor, t2i: torch.Tensor,
                 first: dict[str, torch.Tensor] | None) -> list[dict[str, Any]]:
        """One record per query with the 1-based rank of its ground truth (and the embedding
        rank before re-ranking, when re-ranked)."""
        out = []
        for i in range(n_images):
            rec = {"sample_id": f"i2t/{src.image_ids[i]}", "direction": "i2t", "image_id": src.image_ids[i], "rank": int(i2t[i]) + 1}
            if first is not None:
                rec["embedding_rank"] = int(first["i2t"][i]) + 1
            out.append(rec)
        for j, t in enumerate(texts):
            rec = {"sample_id": f"t2i/{t}", "direction": "t2i", "caption": src.captions[t],
                   "image_id": src.image_ids[src.text_to_image[t]], "rank": int(t2i[j]) + 1}
            if first is not None:
                rec["embedding_rank"] = int(first["t2i"][j]) + 1
            out.append(rec)
        return out
