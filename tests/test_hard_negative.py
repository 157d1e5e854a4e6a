"""Hard-negative tasks: loaders on tiny datasets in each hub schema, metrics, errors, end to end."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from datasets import ClassLabel, Features, Image as HFImage, Sequence, Value
from PIL import Image

import alignbench
from alignbench.data.errors import DataError, DataNotFoundError
from alignbench.data.hard_negative_sources import GatedDatasetError, LocalDataRequiredError
from alignbench.models.base import AlignmentModel, TextBatch
from alignbench.tasks.hard_negative import has_tie, sample_outcome


# ---------------------------------------------------------------------------- a model whose scores we set


def _red(image: Image.Image) -> torch.Tensor:
    """The fake 'pixel values': the red value of the top-left pixel (images are solid colours)."""
    return torch.tensor([float(image.convert("RGB").getpixel((0, 0))[0])])


class TableModel(AlignmentModel):
    """Match score of (image with red value r, caption c) = ``table[(r, c)]`` (0 when unset)."""

    family = "fake"
    capabilities = frozenset({"match"})

    def __init__(self, table: dict[tuple[int, str], float]) -> None:
        super().__init__()
        self.table, self.vocab = dict(table), []
        self.calls = 0

    @property
    def image_size(self) -> int:
        return 2

    def image_transform(self):
        return _red

    def tokenize(self, texts: list[str]) -> TextBatch:
        for t in texts:
            if t not in self.vocab:
                self.vocab.append(t)
        n = len(texts)
        return TextBatch(
            input_ids=torch.tensor([[self.vocab.index(t)] for t in texts]),
            attention_mask=torch.ones(n, 1, dtype=torch.long),
            offsets=torch.zeros(n, 1, 2, dtype=torch.long),
            special=torch.zeros(n, 1, dtype=torch.bool),
        )

    def match_scores(self, pixel_values: torch.Tensor, text: TextBatch) -> torch.Tensor:
        self.calls += 1
        keys = zip(pixel_values[:, 0].round().long().tolist(), text.input_ids[:, 0].tolist())
        return torch.tensor([self.table.get((r, self.vocab[i]), 0.0) for r, i in keys])


def _solid(red: int, size: tuple[int, int] = (40, 30)) -> Image.Image:
    return Image.new("RGB", size, (red, 0, 0))


def _run(task_name: str, model: AlignmentModel, data_dir: Path, **options) -> dict:
    task = alignbench.load_task(task_name, data_dir=str(data_dir), options=options)
    opts = alignbench.RunOptions(batch_size=3, quiet=True)
    return alignbench.evaluate(model, [task], model_name="table", options=opts)[0]


# ---------------------------------------------------------------------------- definitions


def test_definitions_and_sugarcrepe_suite():
    subsets = ["replace-obj", "replace-att", "replace-rel", "swap-obj", "swap-att", "add-obj", "add-att"]
    assert alignbench.expand_task_names(["sugarcrepe"]) == [f"sugarcrepe-{s}" for s in subsets]
    names = [*(f"sugarcrepe-{s}" for s in subsets), "aro-vg-relation", "aro-vg-attribution", "aro-coco-order",
             "aro-flickr30k-order", "valse", "winoground", "align-bench-synth-hardneg"]
    for name in names:
        cfg = alignbench.TASKS.get(name)
        assert (cfg.probe, cfg.requires, cfg.task_type) == ("hard-negative", ("match",), "hard-negative"), name
        assert cfg.citation.lstrip().startswith("@") and cfg.main_metric in cfg.metrics
        assert "hub_id" not in cfg.dataset or cfg.dataset.get("revision_note") or len(cfg.dataset["revision"]) == 40


# ---------------------------------------------------------------------------- metrics


def test_single_image_accuracy_is_strict_and_ties_count_as_wrong():
    assert sample_outcome(np.array([[0.9, 0.1, 0.2]])) == {"correct": True}
    assert sample_outcome(np.array([[0.5, 0.2, 0.7]])) == {"correct": False}
    assert sample_outcome(np.array([[0.4, 0.4]])) == {"correct": False}
    assert has_tie(np.array([[0.4, 0.4, 0.1]])) and not has_tie(np.array([[0.4, 0.1, 0.4 - 1e-6]]))


@pytest.mark.parametrize(
    "scores,text,image",
    [
        ([[1, 0], [0, 1]], True, True),  # both diagonals win
        ([[1, 0], [2, 3]], True, False),  # each image prefers its caption; caption 0 prefers image 1
        ([[1, 2], [0, 3]], False, True),  # image 0 prefers caption 1; each caption prefers its image
        ([[1, 1], [0, 2]], False, True),  # a tie in a text comparison is a miss
        ([[0, 1], [1, 0]], False, False),
    ],
)
def test_winoground_scores_on_2x2_patterns(scores, text, image):
    # rows are images, columns captions: S[i, c]
    assert sample_outcome(np.array(scores, dtype=float)) == {"text_correct": text, "image_correct": image, "group_correct": text and image}


def _aro_official(root: Path, records: list[dict], file: str) -> None:
    (root / "images").mkdir(parents=True)
    for r in records:
        _solid(r.pop("red"), (60, 50)).save(root / "images" / r["image_path"])
    (root / file).write_text(json.dumps(records))


def test_macro_accuracy_respects_min_group_size_and_exclusions(tmp_path):
    # VG-Attribution (official layout): macro over attribute pairs with >= 25 samples (task option)
    recs, table = [], {}
    plan = {"red_big": [True, False], "old_small": [True, True], "tiny_blue": [False]}
    for group, outcomes in plan.items():
        for ok in outcomes:
            k = len(recs) + 1
            t, f = f"true {k}", f"false {k}"
            recs.append({"image_path": f"{k}.png", "bbox_x": 5, "bbox_y": 5, "bbox_w": 20, "bbox_h": 10,
                         "true_caption": t, "false_caption": f, "attributes": group.split("_"), "red": k})
            table[(k, t)], table[(k, f)] = (1.0, 0.0) if ok else (0.0, 1.0)
    _aro_official(tmp_path, recs, "visual_genome_attribution.json")
    model = TableModel(table)
    r = _run("aro-vg-attribution", model, tmp_path, macro_min_group_size=2)
    assert r["metrics"]["accuracy"] == pytest.approx(3 / 5)
    assert r["metrics"]["accuracy_macro"] == pytest.approx((0.5 + 1.0) / 2)  # tiny_blue (n=1) left out
    assert r["counts"]["by_group"]["tiny_blue"] == {"accuracy": 0.0, "n": 1}
    r = _run("aro-vg-attribution", model, tmp_path, macro_min_group_size=1, macro_exclude_groups=["old_small"])
    assert r["metrics"]["accuracy_macro"] == pytest.approx((0.5 + 0.0) / 2)


# ---------------------------------------------------------------------------- loaders, hub schemas


def _save(rows: list[dict], features: Features, path: Path, fmt: str) -> None:
    table = datasets.Dataset.from_list(rows, features=features)
    if fmt == "parquet":
        path.mkdir(parents=True, exist_ok=True)
        table.to_parquet(str(path / "test-00000-of-00001.parquet"))
    else:
        datasets.DatasetDict({"test": table}).save_to_disk(str(path))


SUGARCREPE_FEATURES = lambda names: Features(  # noqa: E731
    {"image": HFImage(), "tested_labels": Sequence(Value("string")), "true_label": ClassLabel(names=names)}
)


@pytest.mark.parametrize("fmt", ["save_to_disk", "parquet"])
def test_sugarcrepe_loader_decodes_the_class_label(tmp_path, fmt):
    pairs = [("a dog on a sofa", "a sofa on a dog"), ("a red car", "a blue car"), ("two cats", "two dogs")]
    names = sorted({c for p in pairs for c in p}, reverse=True)  # the label vocabulary is unordered
    rows = [{"image": _solid(10 * (i + 1)), "tested_labels": list(p), "true_label": names.index(p[0])} for i, p in enumerate(pairs)]
    rows[1]["tested_labels"] = list(reversed(pairs[1]))  # the label, not the order, says which is true
    # one folder holds the whole suite: each subset in a sub-folder named after its hub repo
    _save(rows, SUGARCREPE_FEATURES(names), tmp_path / "SugarCrepe_swap_obj", fmt)
    table = {(10, "a dog on a sofa"): 2.0, (20, "a red car"): 1.0, (20, "a blue car"): 0.5,
             (30, "two cats"): 0.1, (30, "two dogs"): 0.9}
    model = TableModel(table)
    r = _run("sugarcrepe-swap-obj", model, tmp_path)
    assert r["metrics"] == {"accuracy": pytest.approx(2 / 3)}
    assert r["n_samples"] == 3 and r["dataset"]["hub_id"] == "HuggingFaceM4/SugarCrepe_swap_obj"
    assert model.calls == 1  # all 6 pairs of the batch of 3 in one call


def test_aro_vg_relation_hub_schema_crops_to_bbox(tmp_path):
    features = Features({"image": HFImage(), "true_caption": Value("string"), "false_caption": Value("string"),
                         "relation_name": Value("string"),
                         "bbox": {"x": Value("float32"), "y": Value("float32"), "w": Value("float32"), "h": Value("float32")}})
    im = Image.new("RGB", (60, 50), (0, 0, 0))
    im.paste((77, 0, 0), (10, 20, 30, 40))  # only the box is red
    rows = [{"image": im, "true_caption": "the horse is eating the grass", "false_caption": "the grass is eating the horse",
             "relation_name": "eating", "bbox": {"x": 10, "y": 20, "w": 20, "h": 20}}]
    _save(rows, features, tmp_path / "vgr", "parquet")
    model = TableModel({(77, "the horse is eating the grass"): 1.0})
    r = _run("aro-vg-relation", model, tmp_path)
    assert r["metrics"]["accuracy"] == 1.0 and r["counts"]["by_group"] == {"eating": {"accuracy": 1.0, "n": 1}}
    item = alignbench.load_task("aro-vg-relation", data_dir=str(tmp_path)).source[0]
    assert item.images[0].size == (20, 20) and item.group == "eating"

    rows[0]["bbox"] = {"x": 45, "y": 20, "w": 20, "h": 20}  # a quarter out of the image: padded, as officially
    _save(rows, features, tmp_path / "edge" / "vgr", "parquet")
    assert alignbench.load_task("aro-vg-relation", data_dir=str(tmp_path / "edge")).source[0].images[0].size == (20, 20)
    rows[0]["bbox"] = {"x": 55, "y": 20, "w": 20, "h": 20}  # three quarters out: not a box of this image
    _save(rows, features, tmp_path / "bad" / "vgr", "parquet")
    with pytest.raises(DataError, match="lies mostly outside the 60x50 image"):
        alignbench.load_task("aro-vg-relation", data_dir=str(tmp_path / "bad")).source[0]


def test_aro_coco_order_hub_schema_needs_all_four_negatives_beaten(tmp_path):
    cols = ["correct_caption", "hard_text_1", "hard_text_2", "hard_text_3", "hard_text_4"]
    features = Features({"images": HFImage(), **{c: Value("string") for c in cols}})
    rows = [{"images": _solid(5 + i), **{c: f"s{i} {c}" for c in cols}} for i in range(2)]
    _save(rows, features, tmp_path, "save_to_disk")
    table = {(5, "s0 correct_caption"): 1.0, (6, "s1 correct_caption"): 1.0, (6, "s1 hard_text_4"): 2.0}
    r = _run("aro-coco-order", TableModel(table), tmp_path)
    assert r["metrics"]["accuracy"] == 0.5


WINOGROUND_FEATURES = Features({
    "id": Value("int32"), "image_0": HFImage(), "image_1": HFImage(), "caption_0": Value("string"),
    "caption_1": Value("string"), "tag": Value("string"), "secondary_tag": Value("string"),
    "num_main_preds": Value("int32"), "collapsed_tag": Value("string"),
})


def test_winoground_loader_and_scores_end_to_end(tmp_path):
    patterns = [[[1, 0], [0, 1]], [[1, 0], [2, 3]], [[1, 2], [0, 3]], [[1, 1], [0, 2]]]  # text T,T,F,F; image T,F,T,T
    rows, table = [], {}
    for k, s in enumerate(patterns):
        reds, caps = (10 * k + 1, 10 * k + 2), (f"c0 of {k}", f"c1 of {k}")
        rows.append({"id": 100 + k, "image_0": _solid(reds[0]), "image_1": _solid(reds[1]), "caption_0": caps[0],
                     "caption_1": caps[1], "tag": "Object", "secondary_tag": "", "num_main_preds": 1,
                     "collapsed_tag": "Object" if k < 2 else "Relation"})
        table.update({(reds[i], caps[c]): float(s[i][c]) for i in range(2) for c in range(2)})
    _save(rows, WINOGROUND_FEATURES, tmp_path, "parquet")
    r = _run("winoground", TableModel(table), tmp_path)
    assert r["metrics"] == {"text_score": 0.5, "image_score": 0.75, "group_score": 0.25}
    assert alignbench.load_task("winoground", data_dir=str(tmp_path)).sample_ids() == ["100", "101", "102", "103"]
    assert r["counts"]["ties"] == 1
    assert r["counts"]["by_group"]["Relation"] == {"n": 2, "text_score": 0.0, "image_score": 1.0, "group_score": 0.0}


def test_field_mapping_errors_name_the_columns(tmp_path):
    _save([{"image_0": _solid(1), "image_1": _solid(2), "caption_0": "a", "caption_1": "b"}],
          Features({"image_0": HFImage(), "image_1": HFImage(), "caption_0": Value("string"), "caption_1": Value("string")}),
          tmp_path, "parquet")
    with pytest.raises(DataError, match=r"columns \['id', 'collapsed_tag'\] .* not in the dataset"):
        alignbench.load_task("winoground", data_dir=str(tmp_path)).source
    task = alignbench.load_task("winoground", data_dir=str(tmp_path), options={"fields.id": None, "fields.group": None})
    assert task.source[0].captions == ("a", "b")


# ---------------------------------------------------------------------------- loaders, official files


def test_aro_official_relation_layout(tmp_path):
    recs = [{"image_path": "1.png", "bbox_x": 0, "bbox_y": 0, "bbox_w": 60, "bbox_h": 50, "true_caption": "t",
             "false_caption": "f", "relation_name": "on", "red": 3}]
    _aro_official(tmp_path, recs, "visual_genome_relation.json")
    task = alignbench.load_task("aro-vg-relation", data_dir=str(tmp_path))
    item = pickle.loads(pickle.dumps(task.source))[0]  # DataLoader workers get a pickled source
    assert (item.captions, item.group, item.images[0].size) == (("t", "f"), "on", (60, 50))
    assert task.describe_dataset()["source_format"] == "aro-official"


def test_order_test_cases_layout(tmp_path):
    (tmp_path / "flickr30k-images").mkdir()
    _solid(9).save(tmp_path / "flickr30k-images" / "1.png")
    cases = [{"image": "flickr30k-images/1.png", "caption_options": ["a man rides a horse", "a horse rides a man", "man a", "b", "c"]}]
    (tmp_path / "flickr30k_order_test_cases.json").write_text(json.dumps(cases))
    r = _run("aro-flickr30k-order", TableModel({(9, "a man rides a horse"): 1.0}), tmp_path)
    assert r["metrics"]["accuracy"] == 1.0 and r["n_samples"] == 1


def test_valse_keeps_valid_samples_and_groups_by_piece(tmp_path):
    (tmp_path / "images" / "SWiG").mkdir(parents=True)
    _solid(4).save(tmp_path / "images" / "SWiG" / "x.png")
    sample = {"dataset": "SWiG", "image_file": "x.png", "caption": "A man exercises his torso.", "foil": "A torso exercises for a man."}
    (tmp_path / "actions.json").write_text(json.dumps({
        "actions_0": {**sample, "mturk": {"caption": 3, "foil": 0, "other": 0}},
        "actions_1": {**sample, "mturk": {"caption": 1, "foil": 2, "other": 0}},
    }))
    r = _run("valse", TableModel({(4, "A man exercises his torso."): 1.0}), tmp_path)
    assert r["n_samples"] == 1 and r["metrics"]["accuracy"] == 1.0
    assert r["counts"]["by_group"] == {"actions": {"accuracy": 1.0, "n": 1}}
    assert len(alignbench.load_task("valse", data_dir=str(tmp_path), options={"valid_only": False}).sample_ids()) == 2


# ---------------------------------------------------------------------------- errors


def test_missing_hub_data_names_id_revision_and_data_dir():
    with pytest.raises(DataNotFoundError) as e:
        alignbench.load_task("aro-coco-order").source
    msg = str(e.value)
    assert "gowitheflow/ARO-COCO-order" in msg and "853ec8757226585a38a80886c51fe0f3f268787c" in msg and "--data-dir" in msg


@pytest.mark.parametrize("task,needs", [("aro-vg-attribution", "visual_genome_attribution.json"),
                                        ("aro-flickr30k-order", "flickr30k_order_test_cases.json"),
                                        ("valse", "Heidelberg-NLP/VALSE")])
def test_official_only_datasets_explain_the_data_dir_layout(task, needs):
    with pytest.raises(LocalDataRequiredError, match="--data-dir") as e:
        alignbench.load_task(task).source
    assert needs in str(e.value) and "hf download" not in str(e.value)


def test_gated_dataset_says_how_to_get_access(monkeypatch):
    def gated(*args, **kwargs):
        raise datasets.exceptions.DatasetNotFoundError(
            "Dataset 'facebook/winoground' is a gated dataset on the Hub. You must be authenticated to access it.")

    monkeypatch.setattr(datasets, "load_dataset", gated)
    with pytest.raises(GatedDatasetError) as e:
        alignbench.load_task("winoground").source
    msg = str(e.value)
    assert "https://huggingface.co/datasets/facebook/winoground" in msg and "licence" in msg
    assert "hf auth login" in msg and "huggingface-cli login" in msg and "HF_TOKEN" in msg


# ---------------------------------------------------------------------------- end to end


def test_meter_tiny_random_on_synthetic_hard_negatives_writes_and_resumes(tmp_path):
    model = alignbench.load_model("meter-tiny-random")
    tasks = alignbench.load_tasks(["align-bench-synth-hardneg"])
    opts = alignbench.RunOptions(limit=8, batch_size=4, quiet=True)
    first = alignbench.evaluate(model, tasks, output_dir=tmp_path, options=opts)[0]
    samples = tmp_path / "meter-tiny-random" / "align-bench-synth-hardneg.samples.jsonl"
    records = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(records) == 8 and first["n_samples"] == 8 and first["partial"]
    assert all(len(r["scores"]) == 1 and len(r["scores"][0]) >= 2 for r in records)
    expected = np.mean([r["scores"][0][0] > max(r["scores"][0][1:]) for r in records])
    assert first["metrics"]["accuracy"] == pytest.approx(expected)
    assert json.loads((tmp_path / "meter-tiny-random" / "align-bench-synth-hardneg.json").read_text())["metrics"] == first["metrics"]

    again = alignbench.evaluate(model, tasks, output_dir=tmp_path, options=opts)[0]
    assert again["run"]["samples_resumed"] == 8 and again["run"]["samples_computed"] == 0
    assert again["metrics"] == first["metrics"]
