"""RefCOCO-family and Flickr30k Entities loaders, in each source's exact schema, scored end to end."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

import alignbench
import alignbench.data.grounding_sources  # noqa: F401  (registers the data sources until grounding.py imports it)
from alignbench.data.errors import DataError, DataNotFoundError
from alignbench.data.grounding_sources import parse_sentence

W, H = 40, 30
# (question_id, expressions, polygon, bbox xywh): a rectangle, and a triangle in the other image
REFS = [
    ("101", ["man on left, red shirt", "the left guy."], [4.0, 5.0, 20.0, 5.0, 20.0, 25.0, 4.0, 25.0], [4.0, 5.0, 16.0, 20.0]),
    ("102", ["bright triangle"], [22.0, 2.0, 38.0, 2.0, 30.0, 18.0], [22.0, 2.0, 16.0, 16.0]),
]
LMMS_REFCOCO_FEATURES = datasets.Features({  # the dataset card of lmms-lab/RefCOCO
    "question_id": datasets.Value("string"),
    "image": datasets.Image(),
    "question": datasets.Value("string"),
    "answer": datasets.List(datasets.Value("string")),
    "segmentation": datasets.List(datasets.Value("float32")),
    "bbox": datasets.List(datasets.Value("float32")),
    "iscrowd": datasets.Value("int8"),
    "file_name": datasets.Value("string"),
})


@pytest.fixture(scope="module")
def tiny_model() -> alignbench.AlignmentModel:
    return alignbench.load_model("meter-tiny-random")


def _image(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def refcoco_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("refcoco")
    (root / "data").mkdir()
    rows = {
        "question_id": [r[0] for r in REFS],
        "image": [_image(i) for i in range(len(REFS))],
        "question": ["Please carefully observe the area circled in the image and come up with a caption for the area."] * len(REFS),
        "answer": [r[1] for r in REFS],
        "segmentation": [r[2] for r in REFS],
        "bbox": [r[3] for r in REFS],
        "iscrowd": [0] * len(REFS),
        "file_name": [f"COCO_train2014_{i:012d}.jpg" for i in range(len(REFS))],
    }
    datasets.Dataset.from_dict(rows, features=LMMS_REFCOCO_FEATURES).to_parquet(str(root / "data" / "val-00000-of-00001.parquet"))
    other = {k: v[:1] for k, v in rows.items()}
    datasets.Dataset.from_dict(other, features=LMMS_REFCOCO_FEATURES).to_parquet(str(root / "data" / "testA-00000-of-00001.parquet"))
    return root


def test_refcoco_rows_become_one_sample_per_expression(refcoco_dir):
    source = alignbench.load_task("refcoco-global", data_dir=str(refcoco_dir)).source
    assert list(source.sample_ids) == ["101/0", "101/1", "102/0"]  # val only, testA left out
    s = source[0]
    assert s.caption == "man on left, red shirt" and [p.text for p in s.phrases] == ["man on left red shirt"]
    (region,) = s.phrases[0].regions
    assert region.box == (4.0, 5.0, 20.0, 25.0)  # xywh -> x1y1x2y2
    assert region.mask.shape == (H, W) and 0.95 < region.mask.sum() / (16 * 20) <= 1.0
    assert not region.mask[:5].any() and not region.mask[:, :4].any()  # nothing outside the polygon's box
    triangle = source[2].phrases[0].regions[0].mask
    assert abs(triangle.sum() - 16 * 16 / 2) < 16  # a triangle: about half its box
    first_only = alignbench.load_task("refcoco-global", data_dir=str(refcoco_dir), options={"expressions": "first"}).source
    assert list(first_only.sample_ids) == ["101/0", "102/0"]


@pytest.mark.parametrize("task_name", ["refcoco-global", "refcoco-local"])
def test_meter_tiny_random_on_refcoco(tiny_model, refcoco_dir, task_name, tmp_path):
    task = alignbench.load_task(task_name, data_dir=str(refcoco_dir))
    (result,) = alignbench.evaluate(tiny_model, [task], output_dir=tmp_path, options=alignbench.RunOptions(quiet=True))
    assert result["n_samples"] == 3 and result["dataset"]["hub_id"] == "lmms-lab/RefCOCO"
    assert all(0.0 <= result["metrics"][k] <= 1.0 for k in ("box_score", "pixel_score", "pointing_box", "pointing_pixel"))
    if task_name.endswith("local"):
        assert result["counts"]["phrases_scored"] == 3 and result["counts"]["phrases_missing"] == 0


def test_refcoco_field_mapping_errors_and_missing_hub_data(refcoco_dir):
    with pytest.raises(DataNotFoundError) as e:
        alignbench.load_task("refcoco-global").source
    assert "lmms-lab/RefCOCO" in str(e.value) and "a5dff0b3194715fda69b2d6a0d2aaafb41eaa407" in str(e.value) and "--data-dir" in str(e.value)
    cfg = alignbench.TASKS.get("refcoco-global")
    from alignbench.data.grounding_sources import open_refcoco

    dataset = {**cfg.dataset, "fields": {**cfg.dataset["fields"], "expressions": "sentences"}}
    with pytest.raises(DataError, match="expressions -> 'sentences'.*dataset.fields"):
        open_refcoco(dataset, str(refcoco_dir), {})


SENTENCE = "[/EN#1/people A man] in [/EN#2/clothing a red shirt] holds [/EN#0/notvisual something] near [/EN#3/scene the beach] ."
XML = """<annotation><filename>7.jpg</filename><size><width>40</width><height>30</height><depth>3</depth></size>
<object><name>1</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>20</ymax></bndbox></object>
<object><name>2</name><name>1</name><bndbox><xmin>21</xmin><ymin>11</ymin><xmax>40</xmax><ymax>30</ymax></bndbox></object>
<object><name>3</name><nobndbox>0</nobndbox><scene>1</scene></object>
</annotation>"""


@pytest.fixture(scope="module")
def entities_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flickr30k_entities")
    for sub in ("Sentences", "Annotations", "flickr30k-images"):
        (root / sub).mkdir()
    for image_id in ("7", "8"):
        (root / "Sentences" / f"{image_id}.txt").write_text(f"{SENTENCE}\n[/EN#2/clothing A red shirt] .\n")
        (root / "Annotations" / f"{image_id}.xml").write_text(XML)
        _image(int(image_id)).save(root / "flickr30k-images" / f"{image_id}.jpg")
    (root / "test.txt").write_text("7\n")
    return root


def test_sentence_markup_is_parsed():
    caption, phrases = parse_sentence(SENTENCE)
    assert caption == "A man in a red shirt holds something near the beach ."
    assert phrases == [("1", "A man"), ("2", "a red shirt"), ("0", "something"), ("3", "the beach")]


def test_flickr30k_entities_phrases_and_boxes(entities_dir):
    source = alignbench.load_task("flickr30k-entities-local", data_dir=str(entities_dir)).source
    assert list(source.sample_ids) == ["7/0", "7/1"]  # test.txt selects image 7
    s = source[0]
    assert [p.text for p in s.phrases] == ["A man", "a red shirt"]
    # 1-based inclusive XML boxes -> 0-based, exclusive ends; chain 1 also owns the shared box
    assert [r.box for r in s.phrases[0].regions] == [(0.0, 0.0, 10.0, 20.0), (20.0, 10.0, 40.0, 30.0)]
    assert [r.box for r in s.phrases[1].regions] == [(20.0, 10.0, 40.0, 30.0)]
    assert all(r.mask is None for p in s.phrases for r in p.regions)
    assert s.meta["phrases_without_boxes"] == ["something", "the beach"]


def test_meter_tiny_random_on_flickr30k_entities(tiny_model, entities_dir):
    tasks = alignbench.load_tasks(["flickr30k-entities"], data_dir=str(entities_dir))
    glob, local = alignbench.evaluate(tiny_model, tasks, options=alignbench.RunOptions(quiet=True))
    assert glob["probe"] == "global-local" and local["probe"] == "local-local"
    for result in (glob, local):
        assert result["n_samples"] == 2 and result["metrics"]["pixel_score"] is None and result["metrics"]["pointing_pixel"] is None
        assert 0.0 <= result["metrics"]["box_score"] <= 1.0
    assert local["counts"]["phrases_scored"] == 3 and local["counts"]["phrases_missing"] == 0


def test_flickr30k_entities_without_data_dir_says_how_to_get_it():
    with pytest.raises(DataNotFoundError) as e:
        alignbench.load_task("flickr30k-entities-global").source
    assert "git clone https://github.com/BryanPlummer/flickr30k_entities" in str(e.value) and "--data-dir" in str(e.value)
