"""ReleaseLayoutSource on the parity fixture and on broken copies of it."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from alignbench.data.errors import DataError, DataNotFoundError
from alignbench.data.release import ReleaseLayoutSource, sort_sample_ids

FIXTURE = Path(__file__).resolve().parents[2] / "shared/fixtures/align_bench_parity/data"
needs_fixture = pytest.mark.skipif(not FIXTURE.is_dir(), reason=f"parity fixture data not found at {FIXTURE}")


def copy_release(dst: Path, ids: tuple[str, ...] = ("0", "1", "2")) -> Path:
    """A writable copy of some fixture samples (the fixture itself is read-only)."""
    for sub, suffix in (("images", ".jpg"), ("pkls", ".pkl")):
        (dst / sub).mkdir(parents=True)
        for i in ids:
            shutil.copyfile(FIXTURE / sub / f"{i}{suffix}", dst / sub / f"{i}{suffix}")
    return dst


def edit_pickle(root: Path, sample_id: str, edit: Callable[[dict], None]) -> Path:
    """Rewrite ``pkls/<sample_id>.pkl`` after ``edit`` changed its dict in place."""
    path = root / "pkls" / f"{sample_id}.pkl"
    data = pickle.loads(path.read_bytes())
    edit(data)
    path.write_bytes(pickle.dumps(data))
    return path


@needs_fixture
def test_loads_all_fixture_samples() -> None:
    source = ReleaseLayoutSource(FIXTURE)
    assert len(source) == 10
    assert source.sample_ids == tuple(str(i) for i in range(10))
    assert source.describe() == {"format": "release", "root": str(FIXTURE), "n": 10}
    for i, sample in enumerate(source[k] for k in range(len(source))):
        raw = pickle.loads((FIXTURE / "pkls" / f"{i}.pkl").read_bytes())
        assert sample.sample_id == str(i)
        assert sample.caption == raw["caption"]
        assert [p.text for p in sample.phrases] == list(raw["annotation"])
        width, height = sample.size_wh
        for phrase in sample.phrases:
            for region, raw_region in zip(phrase.regions, raw["annotation"][phrase.text], strict=True):
                assert region.box == tuple(float(v) for v in raw_region["bbox_mask"])
                assert all(type(v) is float for v in region.box)
                assert region.mask.dtype == bool and region.mask.shape == (height, width)
                assert np.array_equal(region.mask, raw_region["pixel_mask"])


@needs_fixture
def test_fixture_details() -> None:
    source = ReleaseLayoutSource(FIXTURE)
    sample = source[8]
    assert sample.caption == "Two people stand beside a small brown dog on the beach."
    assert [p.text for p in sample.phrases] == ["people", "small brown dog", "beach"]
    assert sample.phrases[0].regions[1].box == (52.55, 32.95, 83.6, 109.51)
    assert sample.size_wh == (176, 132) and sample.image.mode == "RGB"
    assert source[1].phrases[1].regions[0].box == (0.2, 0.3, 199.99, 135.99)
    assert source[-1].sample_id == "9"


def test_sample_ids_sort_numerically_then_as_strings() -> None:
    assert sort_sample_ids(["10", "b", "2", "a", "1", "02"]) == ["1", "02", "2", "10", "a", "b"]


@needs_fixture
def test_ids_from_file_stems(tmp_path: Path) -> None:
    root = copy_release(tmp_path / "r", ("0", "1", "2"))
    for sub, suffix in (("images", ".jpg"), ("pkls", ".pkl")):
        (root / sub / f"1{suffix}").rename(root / sub / f"10{suffix}")
        (root / sub / f"2{suffix}").rename(root / sub / f"x{suffix}")
    (root / "images" / "notes.txt").write_text("ignored")
    source = ReleaseLayoutSource(root)
    assert source.sample_ids == ("0", "10", "x")
    assert source[2].sample_id == "x"


@needs_fixture
def test_fingerprint(tmp_path: Path) -> None:
    first = ReleaseLayoutSource(copy_release(tmp_path / "a"))
    second = ReleaseLayoutSource(copy_release(tmp_path / "b"))
    assert first.fingerprint == second.fingerprint == first.fingerprint  # location-independent, cached
    edit_pickle(tmp_path / "b", "1", lambda d: d.update(caption=d["caption"] + " "))
    assert ReleaseLayoutSource(tmp_path / "b").fingerprint != first.fingerprint
    image = tmp_path / "a" / "images" / "2.jpg"
    image.write_bytes(image.read_bytes() + b"\0")
    assert ReleaseLayoutSource(tmp_path / "a").fingerprint != first.fingerprint


def _set_box(box: object) -> Callable[[dict], None]:
    return lambda d: d["annotation"]["grass"][0].update(bbox_mask=box)


# sample 1 is 200x150; its phrases are "yellow triangles" (2 regions) and "grass"
BAD_PICKLES = {
    "no caption": (lambda d: d.__delitem__("caption"), "no 'caption' string"),
    "empty caption": (lambda d: d.update(caption="  "), "empty"),
    "caption not a string": (lambda d: d.update(caption=3), "no 'caption' string (found int)"),
    "no annotation": (lambda d: d.__delitem__("annotation"), "no 'annotation' dict (found NoneType)"),
    "annotation not a dict": (lambda d: d.update(annotation=[1]), "no 'annotation' dict (found list)"),
    "no bbox_mask": (lambda d: d["annotation"]["grass"][0].clear(), "'grass' region 0 has no 'bbox_mask'"),
    "box of 3": (_set_box([1, 2, 3]), "not 4 finite numbers"),
    "box of strings": (_set_box(["1", 2, 3, 4]), "not 4 finite numbers"),
    "box with nan": (_set_box([1, 2, float("nan"), 4]), "not 4 finite numbers"),
    "box with inf": (_set_box([1, 2, 3, float("inf")]), "not 4 finite numbers"),
    "x2 < x1": (_set_box([10, 2, 5, 4]), "x2 < x1"),
    "y2 < y1": (_set_box([1, 20, 5, 4]), "y2 < y1"),
    "x1 < 0": (_set_box([-0.5, 2, 5, 4]), "outside the 200x150 image"),
    "y1 < 0": (_set_box([1, -1, 5, 4]), "outside the 200x150 image"),
    "x2 > W": (_set_box([1, 2, 200.5, 4]), "outside the 200x150 image"),
    "y2 > H": (_set_box([1, 2, 5, 151]), "outside the 200x150 image"),
    "mask shape": (
        lambda d: d["annotation"]["yellow triangles"][1].update(pixel_mask=np.zeros((200, 150), bool)),
        "'yellow triangles' region 1: pixel mask has shape (200, 150), but the image is (H, W) = (150, 200)",
    ),
    "mask not an array": (lambda d: d["annotation"]["grass"][0].update(pixel_mask=[[1]]), "a list, not a numpy"),
}


@needs_fixture
@pytest.mark.parametrize("case", list(BAD_PICKLES))
def test_bad_pickle_names_sample_file_and_problem(tmp_path: Path, case: str) -> None:
    edit, problem = BAD_PICKLES[case]
    root = copy_release(tmp_path / "r")
    path = edit_pickle(root, "1", edit)
    source = ReleaseLayoutSource(root)
    source[0], source[2]  # the other samples are fine
    with pytest.raises(DataError) as info:
        source[1]
    message = str(info.value)
    assert "sample '1'" in message and str(path) in message and problem in message, message


@needs_fixture
@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        ("images/1.jpg:delete", "image file is missing"),
        ("images/1.jpg:garbage", "image is unreadable"),
        ("images/1.jpg:truncate", "image is unreadable"),
        ("pkls/1.pkl:delete", "annotation pickle is missing"),
        ("pkls/1.pkl:garbage", "annotation pickle is unreadable"),
        ("pkls/1.pkl:truncate", "annotation pickle is unreadable"),
        ("pkls/1.pkl:list", "annotation pickle holds a list, not a dict"),
    ],
)
def test_bad_files(tmp_path: Path, broken: str, problem: str) -> None:
    root = copy_release(tmp_path / "r")
    source = ReleaseLayoutSource(root)
    name, how = broken.split(":")
    path = root / name
    if how == "delete":
        path.unlink()
    elif how == "list":
        path.write_bytes(pickle.dumps([1]))
    else:
        path.write_bytes(b"not an image or a pickle" if how == "garbage" else path.read_bytes()[:500])
    with pytest.raises(DataError) as info:
        source[1]
    message = str(info.value)
    assert "sample '1'" in message and str(path) in message and problem in message, message


@needs_fixture
def test_unpaired_files_fail_on_construction(tmp_path: Path) -> None:
    root = copy_release(tmp_path / "r", ("0", "1", "2", "3", "4", "5", "6", "7"))
    for i in ("1", "3", "4", "5", "6", "7"):
        (root / "pkls" / f"{i}.pkl").unlink()
    shutil.copyfile(root / "images" / "0.jpg", root / "pkls" / "0.jpg")  # wrong suffix: not a pickle
    (root / "images" / "2.jpg").unlink()
    with pytest.raises(DataError) as info:
        ReleaseLayoutSource(root)
    message = str(info.value)
    assert "images without a pickle: 1, 3, 4, 5, 6 and 1 more" in message
    assert "pickles without an image: 2" in message and str(root) in message


def test_missing_subdirectory(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match="pkls/"):
        ReleaseLayoutSource(tmp_path)


def test_errors_survive_pickling() -> None:
    error = DataError("box is bad", "7", "/x/7.pkl")
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) and (copy.sample_id, copy.path) == ("7", "/x/7.pkl")
    missing = DataNotFoundError("owner/name", "main", "not cached")
    assert str(pickle.loads(pickle.dumps(missing))) == str(missing)
    assert isinstance(missing, FileNotFoundError) and isinstance(error, ValueError)
