"""Retrieval: chunked ranks against a brute-force ranking, two-stage re-ranking, resume, data loading."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

import alignbench
from alignbench.data.errors import DataNotFoundError
from alignbench.models.base import AlignmentModel, CapabilityError, TextBatch
from alignbench.tasks.retrieval import embedding_ranks

CAPTIONS_PER_IMAGE = [5, 3, 5, 6, 2, 5, 4, 5, 5, 1]  # varied, like COCO's 5-7
N_IMAGES = len(CAPTIONS_PER_IMAGE)
TEXT_TO_IMAGE = np.repeat(np.arange(N_IMAGES), CAPTIONS_PER_IMAGE)


def _image(i: int) -> Image.Image:
    """A tiny image whose pixel colour encodes its index."""
    return Image.new("RGB", (6, 4), (i % 256, i // 256, 7))


class PixelIndex:
    """Image transform of the fake model: the index encoded in the pixel colour."""

    def __call__(self, image: Image.Image) -> torch.Tensor:
        r, g, _ = image.getpixel((0, 0))
        return torch.tensor([r + 256 * g])


class TableModel(AlignmentModel):
    """Embeddings and match scores looked up in tables, by the image index and the caption
    index ("caption <t>") its inputs carry."""

    family = "table"

    def __init__(self, image_emb: torch.Tensor, text_emb: torch.Tensor, match: torch.Tensor | None = None,
                 capabilities: set[str] | None = None, fail_after_image_batches: int | None = None) -> None:
        super().__init__()
        self.image_emb, self.text_emb, self.match = image_emb, text_emb, match
        self.capabilities = frozenset(capabilities or ({"embed", "match"} if match is not None else {"embed"}))
        self.image_batches = 0
        self.fail_after = fail_after_image_batches

    @property
    def image_size(self) -> int:
        return 4

    def image_transform(self) -> PixelIndex:
        return PixelIndex()

    def tokenize(self, texts: list[str]) -> TextBatch:
        ids = torch.tensor([[int(t.split()[-1])] for t in texts])
        return TextBatch(ids, torch.ones_like(ids), torch.zeros(len(texts), 1, 2, dtype=torch.long), torch.zeros_like(ids, dtype=torch.bool))

    def embed_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.fail_after is not None and self.image_batches >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.image_batches += 1
        return self.image_emb[pixel_values[:, 0]]

    def embed_texts(self, text: TextBatch) -> torch.Tensor:
        return self.text_emb[text.input_ids[:, 0]]

    def match_scores(self, pixel_values: torch.Tensor, text: TextBatch) -> torch.Tensor:
        return self.match[pixel_values[:, 0], text.input_ids[:, 0]]


def _write_nlphuji_parquet(root: Path) -> Path:
    """The tiny test set in the schema of nlphuji/*_image_text_retrieval's parquet conversion
    (``<config>/<split>/*.parquet``: image, caption list, filename, ...)."""
    captions, t = [], 0
    for n in CAPTIONS_PER_IMAGE:
        captions.append([f"caption {t + j}" for j in range(n)])
        t += n
    features = datasets.Features({
        "image": datasets.Image(),
        "caption": datasets.List(datasets.Value("string")),
        "sentids": datasets.List(datasets.Value("string")),
        "split": datasets.Value("string"),
        "img_id": datasets.Value("string"),
        "filename": datasets.Value("string"),
    })
    ds = datasets.Dataset.from_dict({
        "image": [_image(i) for i in range(N_IMAGES)],
        "caption": captions,
        "sentids": [[str(x) for x in range(len(c))] for c in captions],
        "split": ["test"] * N_IMAGES,
        "img_id": [str(i) for i in range(N_IMAGES)],
        "filename": [f"{1000 + i}.jpg" for i in range(N_IMAGES)],
    }, features=features)
    out = root / "TEST" / "test"
    out.mkdir(parents=True)
    ds.to_parquet(str(out / "0000.parquet"))
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_nlphuji_parquet(tmp_path_factory.mktemp("flickr1k"))


@pytest.fixture(scope="module")
def embeddings() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(N_IMAGES, 8, generator=g), dim=1)
    txt = torch.nn.functional.normalize(torch.randn(len(TEXT_TO_IMAGE), 8, generator=g), dim=1)
    return img, txt


def _brute_force_ranks(img: np.ndarray, txt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks from the full similarity matrix sorted per query."""
    sims = img @ txt.T
    i2t = np.array([min(np.where(np.argsort(-sims[i]) == t)[0][0] for t in np.where(TEXT_TO_IMAGE == i)[0]) + 1 for i in range(len(img))])
    t2i = np.array([np.where(np.argsort(-sims[:, t]) == TEXT_TO_IMAGE[t])[0][0] + 1 for t in range(len(txt))])
    return i2t, t2i


def _recalls(i2t: np.ndarray, t2i: np.ndarray) -> dict[str, float]:
    out = {f"{d}_r{k}": 100.0 * float(np.mean(r <= k)) for d, r in (("i2t", i2t), ("t2i", t2i)) for k in (1, 5, 10)}
    out["rsum"] = sum(out.values())
    return out


def _evaluate(model: AlignmentModel, data_dir: Path, out: Path | None = None, batch_size: int | str = 2, **options) -> dict:
    task = alignbench.load_task("flickr30k-retrieval", data_dir=str(data_dir), options=options)
    run = alignbench.RunOptions(batch_size=batch_size, quiet=True)
    (result,) = alignbench.evaluate(model, [task], model_name="table", output_dir=out, options=run)
    return result


def _ranks_from_records(path: Path) -> dict[str, np.ndarray]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return {d: np.array([r["rank"] for r in records if r["direction"] == d]) for d in ("i2t", "t2i")}


@pytest.mark.parametrize("chunk_size", [1, 3, 1000])
def test_chunked_ranks_equal_the_full_matrix(embeddings, chunk_size):
    img, txt = embeddings
    text_labels, image_labels = torch.tensor(TEXT_TO_IMAGE), torch.arange(N_IMAGES)
    i2t, top = embedding_ranks(img, txt, image_labels, text_labels, chunk_size=chunk_size, k=4)
    t2i, _ = embedding_ranks(txt, img, text_labels, image_labels, chunk_size=chunk_size)
    want_i2t, want_t2i = _brute_force_ranks(img.numpy(), txt.numpy())
    assert (i2t.numpy() + 1 == want_i2t).all() and (t2i.numpy() + 1 == want_t2i).all()
    assert (top == torch.argsort(img @ txt.T, dim=1, descending=True)[:, :4]).all()


def test_dual_encoder_recalls_match_brute_force(embeddings, data_dir, tmp_path):
    img, txt = embeddings
    result = _evaluate(TableModel(img, txt), data_dir, tmp_path, batch_size="auto", chunk_size=3, shard_size=4)
    want_i2t, want_t2i = _brute_force_ranks(img.numpy(), txt.numpy())
    assert result["metrics"] == pytest.approx(_recalls(want_i2t, want_t2i))
    assert result["protocol"]["rerank"] is False and result["protocol"]["k"] is None
    assert result["run"]["chunk_size"] == 3 and result["run"]["batch_size_used"] == 32
    assert result["counts"]["captions"] == len(TEXT_TO_IMAGE)
    ranks = _ranks_from_records(tmp_path / "table" / "flickr30k-retrieval.samples.jsonl")
    assert (ranks["i2t"] == want_i2t).all() and (ranks["t2i"] == want_t2i).all()
    assert result["dataset"]["source_images"] == N_IMAGES


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_two_stage_reranking_orders_candidates_by_match_score(embeddings, data_dir, sign):
    """A perfect matcher lifts every ground truth found among the k candidates to rank 1; an
    adversarial one pushes it to the bottom of the candidates; the rest keep their rank."""
    img, txt = embeddings
    truth = torch.tensor(TEXT_TO_IMAGE)[None, :] == torch.arange(N_IMAGES)[:, None]
    k = 4
    result = _evaluate(TableModel(img, txt, match=sign * truth.float()), data_dir, k=k, chunk_size=2)
    emb_i2t, emb_t2i = _brute_force_ranks(img.numpy(), txt.numpy())
    sims = (img @ txt.T).numpy()
    in_top_i2t = [np.isin(np.where(TEXT_TO_IMAGE == i)[0], np.argsort(-sims[i])[:k]).sum() for i in range(N_IMAGES)]
    if sign > 0:
        want_i2t = np.where(emb_i2t <= k, 1, emb_i2t)
        want_t2i = np.where(emb_t2i <= k, 1, emb_t2i)
    else:
        want_i2t = np.where(emb_i2t <= k, k - np.array(in_top_i2t) + 1, emb_i2t)
        want_t2i = np.where(emb_t2i <= k, k, emb_t2i)
    assert result["protocol"] == {"similarity": "cosine", "rerank": True, "k": k, "ties": "in the query's favour"}
    assert result["metrics"] == pytest.approx(_recalls(want_i2t, want_t2i))
    assert result["metrics"] != pytest.approx(_recalls(emb_i2t, emb_t2i))


def test_killed_run_resumes_from_saved_embedding_shards(embeddings, data_dir, tmp_path):
    img, txt = embeddings
    # shard_size 4 with batch_size 2: two image batches per shard; the third batch is "killed"
    with pytest.raises(KeyboardInterrupt):
        _evaluate(TableModel(img, txt, fail_after_image_batches=2), data_dir, tmp_path, shard_size=4)
    survivor = TableModel(img, txt)
    result = _evaluate(survivor, data_dir, tmp_path, shard_size=4)
    assert survivor.image_batches == 3  # 10 images = shards of 4, 4, 2; the first was not recomputed
    assert result["counts"]["embedding_shards_resumed"] == 1
    assert result["metrics"] == pytest.approx(_recalls(*_brute_force_ranks(img.numpy(), txt.numpy())))
    again = TableModel(img, txt)
    finished = _evaluate(again, data_dir, tmp_path, shard_size=4)
    assert again.image_batches == 0 and finished["run"]["samples_resumed"] == finished["counts"]["queries"]
    assert finished["metrics"] == result["metrics"]


def test_model_without_embeddings_is_refused(embeddings, data_dir):
    img, txt = embeddings
    with pytest.raises(CapabilityError, match="embed"):
        _evaluate(TableModel(img, txt, match=torch.zeros(N_IMAGES, len(TEXT_TO_IMAGE)), capabilities={"match"}), data_dir)
    with pytest.raises(CapabilityError, match="matching head"):
        _evaluate(TableModel(img, txt), data_dir, rerank=True)


def test_missing_hub_data_names_dataset_revision_and_data_dir():
    task = alignbench.load_task("coco-retrieval")
    with pytest.raises(DataNotFoundError) as e:
        task.source
    msg = str(e.value)
    assert "nlphuji/mscoco_2014_5k_test_image_text_retrieval" in msg and "refs/convert/parquet" in msg and "--data-dir" in msg


def test_unmapped_columns_are_reported(tmp_path):
    ds = datasets.Dataset.from_dict({"img": [_image(0)], "sentences": [["caption 0"]]})
    ds.to_parquet(str(tmp_path / "test-00000-of-00001.parquet"))
    with pytest.raises(ValueError, match="captions -> 'caption'.*dataset.fields"):
        alignbench.load_task("flickr30k-retrieval", data_dir=str(tmp_path)).source


def test_karpathy_split_file_layout(tmp_path, embeddings):
    images = []
    for i, n in enumerate(CAPTIONS_PER_IMAGE):
        (tmp_path / "val2014").mkdir(exist_ok=True)
        _image(i).save(tmp_path / "val2014" / f"{i}.png")
        first = int(np.where(TEXT_TO_IMAGE == i)[0][0])
        images.append({"filepath": "val2014", "filename": f"{i}.png", "split": "test",
                       "sentences": [{"raw": f"caption {first + j}"} for j in range(n)]})
    images.append({"filepath": "val2014", "filename": "train.png", "split": "train", "sentences": [{"raw": "caption 0"}]})
    (tmp_path / "dataset_coco.json").write_text(json.dumps({"images": images}))
    img, txt = embeddings
    task = alignbench.load_task("coco-retrieval", data_dir=str(tmp_path))
    (result,) = alignbench.evaluate(TableModel(img, txt), [task], model_name="t", options=alignbench.RunOptions(quiet=True))
    assert result["n_samples"] == N_IMAGES and result["dataset"]["source_format"] == "karpathy-json"
    assert result["metrics"] == pytest.approx(_recalls(*_brute_force_ranks(img.numpy(), txt.numpy())))


def test_meter_tiny_random_on_synthetic_retrieval(tmp_path):
    model = alignbench.load_model("meter-tiny-random")
    tasks = alignbench.load_tasks(["align-bench-synth-retrieval"])
    (result,) = alignbench.evaluate(model, tasks, output_dir=tmp_path, options=alignbench.RunOptions(limit=6, batch_size=8, quiet=True))
    assert result["partial"] and result["n_samples"] == 6 and result["counts"]["captions"] == 12
    assert result["protocol"]["rerank"] is True and result["protocol"]["k"] == 16  # METER has a matching head
    ranks = _ranks_from_records(tmp_path / "meter-tiny-random" / "align-bench-synth-retrieval.samples.jsonl")
    assert result["metrics"] == pytest.approx(_recalls(ranks["i2t"], ranks["t2i"]))
    assert set(result["metrics"]) == set(tasks[0].config.metrics)
