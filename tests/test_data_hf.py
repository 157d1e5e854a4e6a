"""The Hugging Face form: RLE, conversion, HFGroundingSource and open_grounding_source."""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path

import datasets
import huggingface_hub
import numpy as np
import pytest
from PIL import Image

from alignbench.data.errors import DataError, DataNotFoundError
from alignbench.data.hf import (
    GROUNDING_FEATURES,
    NO_MASK,
    HFGroundingSource,
    convert_release_to_hf,
    open_grounding_source,
)
from alignbench.data.release import ReleaseLayoutSource
from alignbench.data.rle import decode_mask, encode_mask
from test_data_release import FIXTURE, copy_release, needs_fixture

HUB = {"hub_id": "owner/align-bench", "revision": "main", "split": "train"}


def assert_same_samples(a, b) -> None:
    assert a.sample_ids == b.sample_ids
    for i in range(len(a)):
        x, y = a[i], b[i]
        for attribute in ("sample_id", "caption", "size_wh"):
            assert getattr(x, attribute) == getattr(y, attribute)
        assert x.image.mode == y.image.mode
        assert np.array_equal(np.asarray(x.image), np.asarray(y.image))
        assert [p.text for p in x.phrases] == [p.text for p in y.phrases]
        for p, q in zip(x.phrases, y.phrases):
            assert len(p.regions) == len(q.regions)
            for r, s in zip(p.regions, q.regions):
                assert r.box == s.box
                assert (r.mask is None and s.mask is None) or (
                    s.mask.dtype == bool and np.array_equal(r.mask, s.mask)
                )


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not FIXTURE.is_dir():
        pytest.skip(f"parity fixture data not found at {FIXTURE}")
    dst = tmp_path_factory.mktemp("hf") / "align-bench"
    convert_release_to_hf(FIXTURE, dst)
    return dst


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep ``load_dataset``'s cache out of the user's home."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An empty, offline Hugging Face cache under ``tmp_path``; yields the hub cache folder."""
    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    # huggingface_hub reads the environment at import time
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    huggingface_hub.utils.reset_sessions()
    yield cache
    huggingface_hub.utils.reset_sessions()


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (37, 51), (120, 160)])
def test_rle_round_trip(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    for mask in (rng.random(shape) > 0.5, np.zeros(shape, bool), np.ones(shape, bool)):
        rle = encode_mask(mask)
        assert rle["size"] == list(shape) and isinstance(rle["counts"], str)
        decoded = decode_mask(rle)
        assert decoded.dtype == bool and decoded.flags.c_contiguous and np.array_equal(decoded, mask)
        assert np.array_equal(decode_mask({**rle, "counts": rle["counts"].encode()}), mask)


def test_rle_rejects_non_2d() -> None:
    with pytest.raises(ValueError, match="2-D"):
        encode_mask(np.zeros((2, 2, 2), bool))


@needs_fixture
def test_conversion_gives_identical_samples(converted: Path) -> None:
    dataset = datasets.load_from_disk(str(converted))
    assert dataset.features == GROUNDING_FEATURES and len(dataset) == 10
    stored = dataset.cast_column("image", datasets.Image(decode=False))[3]["image"]["bytes"]
    assert stored == (FIXTURE / "images" / "3.jpg").read_bytes()  # original bytes, not re-encoded
    source = HFGroundingSource(dataset, description={"format": "save_to_disk", "root": str(converted)})
    assert source.describe() == {"format": "save_to_disk", "root": str(converted), "n": 10}
    assert_same_samples(ReleaseLayoutSource(FIXTURE), source)


@needs_fixture
def test_conversion_in_parallel(tmp_path: Path) -> None:
    root = copy_release(tmp_path / "r", ("0", "1", "2", "3"))
    dataset = convert_release_to_hf(root, tmp_path / "hf", num_proc=2)
    assert list(dataset["sample_id"]) == ["0", "1", "2", "3"]
    assert_same_samples(ReleaseLayoutSource(root), HFGroundingSource(dataset, description={}))
    (root / "pkls" / "3.pkl").write_bytes(b"broken")
    with pytest.raises(DataError, match="sample '3'.*annotation pickle is unreadable"):
        convert_release_to_hf(root, tmp_path / "hf2", num_proc=2)


@needs_fixture
def test_conversion_validates(tmp_path: Path) -> None:
    root = copy_release(tmp_path / "r")
    (root / "images" / "2.jpg").write_bytes(b"broken")
    with pytest.raises(DataError, match="sample '2'.*image is unreadable"):
        convert_release_to_hf(root, tmp_path / "hf")


@needs_fixture
def test_exif_orientation_is_not_applied(tmp_path: Path) -> None:
    """``datasets.Image`` would rotate this image; the release layout does not, and neither may we."""
    root = copy_release(tmp_path / "r", ("0",))
    image = Image.open(root / "images" / "0.jpg")
    exif = image.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees
    image.save(root / "images" / "0.jpg", exif=exif, quality=95)
    convert_release_to_hf(root, tmp_path / "hf")
    source = open_grounding_source(tmp_path / "hf", **HUB)
    assert isinstance(source, HFGroundingSource)
    assert_same_samples(ReleaseLayoutSource(root), source)


def _one_row_dataset(box: list[float], mask: dict, caption: str = "a red circle") -> datasets.Dataset:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 10)).save(buffer, format="JPEG")
    row = {
        "sample_id": "s1",
        "image": {"bytes": buffer.getvalue(), "path": None},
        "caption": caption,
        "phrases": [{"text": "red circle", "regions": [{"box": box, "mask": mask}]}],
    }
    return datasets.Dataset.from_list([row], features=GROUNDING_FEATURES)


@pytest.mark.parametrize(
    ("box", "mask", "caption", "problem"),
    [
        ([1, 2, 3, 4], NO_MASK, "", "caption '' is missing or empty"),
        ([1, 2, float("nan"), 4], NO_MASK, "c", "not 4 finite numbers"),
        ([5, 2, 3, 4], NO_MASK, "c", "x2 < x1"),
        ([1, 2, 3, 11], NO_MASK, "c", "outside the 20x10 image"),
        ([1, 2, 3, 4], encode_mask(np.ones((20, 10), bool)), "c",
         "shape (20, 10), but the image is (H, W) = (10, 20)"),
    ],
)
def test_hf_source_validates(box: list[float], mask: dict, caption: str, problem: str) -> None:
    source = HFGroundingSource(_one_row_dataset(box, mask, caption), description={"root": "/data/x"})
    with pytest.raises(DataError) as info:
        source[0]
    message = str(info.value)
    assert "sample 's1'" in message and "/data/x" in message and problem in message, message


def test_hf_source_mask_and_fingerprint() -> None:
    mask = np.zeros((10, 20), bool)
    mask[2:4, 1:3] = True
    dataset = _one_row_dataset([1, 2, 3, 4], encode_mask(mask))
    sample = HFGroundingSource(dataset, description={"root": "a"})[0]
    assert np.array_equal(sample.phrases[0].regions[0].mask, mask)
    assert sample.phrases[0].regions[0].box == (1.0, 2.0, 3.0, 4.0)
    assert HFGroundingSource(dataset, description={"root": "a"})[-1].sample_id == "s1"
    no_mask = HFGroundingSource(_one_row_dataset([1, 2, 3, 4], NO_MASK), description={"root": "a"})[0]
    assert no_mask.phrases[0].regions[0].mask is None
    fingerprints = {
        HFGroundingSource(d, description={"root": r}).fingerprint
        for d, r in ((dataset, "a"), (dataset, "b"), (dataset.select([0]), "a"))
    }
    assert len(fingerprints) == 3
    assert HFGroundingSource(dataset, description={"root": "a"}).fingerprint in fingerprints


def test_hf_source_rejects_other_schemas() -> None:
    other = datasets.Dataset.from_dict({"image_id": [1], "question": ["q"]})
    with pytest.raises(DataError, match=r"columns found: \['image_id', 'question'\].*no column 'sample_id'"):
        HFGroundingSource(other, description={})
    wrong_type = _one_row_dataset([1, 2, 3, 4], NO_MASK).remove_columns("sample_id")
    wrong_type = wrong_type.add_column("sample_id", [1])
    expected = "column 'sample_id' is Value('int64'), expected Value('string')"
    with pytest.raises(DataError, match=re.escape(expected)):
        HFGroundingSource(wrong_type, description={})


@needs_fixture
def test_open_release_dir() -> None:
    source = open_grounding_source(FIXTURE, **HUB)
    assert isinstance(source, ReleaseLayoutSource) and len(source) == 10


@needs_fixture
def test_open_save_to_disk_dirs(converted: Path, tmp_path: Path) -> None:
    source = open_grounding_source(str(converted), **HUB)
    assert isinstance(source, HFGroundingSource) and source.describe()["format"] == "save_to_disk"
    assert source.sample_ids == tuple(str(i) for i in range(10))

    dataset = datasets.load_from_disk(str(converted))
    datasets.DatasetDict({"test": dataset.select([0, 1])}).save_to_disk(str(tmp_path / "dict"))
    assert open_grounding_source(tmp_path / "dict", **{**HUB, "split": "test"}).sample_ids == ("0", "1")
    with pytest.raises(DataError, match=r"no split 'train'; the dataset has \['test'\]"):
        open_grounding_source(tmp_path / "dict", **HUB)


@needs_fixture
@pytest.mark.parametrize("subdir", ["", "data"])
def test_open_parquet_dir(converted: Path, tmp_path: Path, subdir: str) -> None:
    dataset = datasets.load_from_disk(str(converted))
    folder = tmp_path / "pq" / subdir
    folder.mkdir(parents=True)
    dataset.select(range(3)).to_parquet(str(folder / "train-00000-of-00002.parquet"))
    dataset.select(range(3, 5)).to_parquet(str(folder / "train-00001-of-00002.parquet"))
    dataset.select(range(5, 10)).to_parquet(str(folder / "test-00000-of-00001.parquet"))
    source = open_grounding_source(tmp_path / "pq", **HUB)
    assert isinstance(source, HFGroundingSource) and source.describe()["format"] == "parquet"
    assert source.sample_ids == ("0", "1", "2", "3", "4")
    assert_same_samples(ReleaseLayoutSource(copy_release(tmp_path / "r", ("0", "1", "2", "3", "4"))), source)


def test_open_parquet_with_other_schema(tmp_path: Path) -> None:
    datasets.Dataset.from_dict({"question": ["q"], "answer": ["a"]}).to_parquet(str(tmp_path / "x.parquet"))
    with pytest.raises(DataError, match=r"columns found: \['question', 'answer'\]"):
        open_grounding_source(tmp_path, **HUB)


def test_open_unrecognised_dir(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "README.md").write_text("hi")
    with pytest.raises(DataError) as info:
        open_grounding_source(tmp_path, **HUB)
    message = str(info.value)
    assert str(tmp_path) in message and "found ['README.md', 'images/']" in message
    assert "expected images/ + pkls/" in message


@needs_fixture
def test_open_ambiguous_dir(tmp_path: Path) -> None:
    copy_release(tmp_path / "a", ("0",))
    copy_release(tmp_path / "b", ("0",))
    with pytest.raises(DataError, match=r"several datasets: \['a', 'b'\]"):
        open_grounding_source(tmp_path, **HUB)


def test_open_missing_data_dir(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="owner/align-bench.*'main'.*is not a directory"):
        open_grounding_source(tmp_path / "nope", **HUB)


def test_hub_dataset_not_cached_offline(offline_hub: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        open_grounding_source(None, hub_id="owner/align-bench", revision="v1.0", split="train")
    message = str(info.value)
    assert "'owner/align-bench'" in message and "'v1.0'" in message
    assert "--repo-type dataset --revision v1.0" in message and "--data-dir" in message


@needs_fixture
def test_hub_snapshot_found_offline(offline_hub: Path) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = offline_hub / "datasets--owner--align-bench"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    copy_release(snapshot / "ALIGN-BENCH", ("0", "1"))
    (snapshot / "README.md").write_text("card")
    source = open_grounding_source(None, **HUB)
    assert isinstance(source, ReleaseLayoutSource)
    assert source.root == snapshot / "ALIGN-BENCH" and source.sample_ids == ("0", "1")
    assert source[1].caption == pickle.loads((FIXTURE / "pkls" / "1.pkl").read_bytes())["caption"]
