"""Leaderboards from result files (issue 6, items 1-2): grouping, ordering, renderers."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest
from click.testing import CliRunner

import alignbench
from alignbench.cli_reports import leaderboard_cmd
from alignbench.leaderboard import (
    Leaderboard,
    ResultFileError,
    build_leaderboard,
    load_reported,
    load_results,
    measured_frame,
    to_csv,
    to_html,
    to_json,
    to_markdown,
    write_chart,
)

MODEL = "meter-tiny-random"
LIMIT = 20
TASKS = ("align-bench-synth-global", "align-bench-synth-local")


def synth_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real results of the bundled tiny model on the first LIMIT synthetic samples, computed once
    per test session (shared by the report tests through the session's base temp folder)."""
    root = tmp_path_factory.getbasetemp() / "reports-synth-results"
    if not all((root / MODEL / f"{t}.json").exists() for t in TASKS):
        model = alignbench.load_model(MODEL)
        opts = alignbench.RunOptions(limit=LIMIT, batch_size=10, quiet=True)
        alignbench.evaluate(model, alignbench.load_tasks(list(TASKS)), model_name=MODEL, output_dir=root, options=opts)
    return root


def write_variant(src: Path, dst: Path, *, model: str = MODEL, edit: Callable[[dict], None] | None = None,
                  tasks: tuple[str, ...] = TASKS) -> Path:
    """Edited copies of the real result files: renamed model, fields changed by ``edit``."""
    for task in tasks:
        data = json.loads((src / MODEL / f"{task}.json").read_text())
        data["model"] = model
        if edit:
            edit(data)
        out = dst / model / f"{task}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data))
    return dst


def complete(data: dict) -> None:
    """Make a result stand for a complete run (of a dataset with exactly these samples)."""
    data["partial"] = False
    data["n_samples_total"] = data["n_samples"]


def shifted(delta: float, task: str | None = None) -> Callable[[dict], None]:
    """A complete run whose box_score moved by ``delta`` (in ``task`` or every task)."""
    def edit(data: dict) -> None:
        complete(data)
        if task in (None, data["task"]):
            data["metrics"]["box_score"] += delta
    return edit


def other_protocol(data: dict) -> None:
    complete(data)
    data["protocol"]["head_reduction"] = "mean"
    data["map_method"]["head_reduction"] = "mean"


def other_dataset(data: dict) -> None:
    complete(data)
    data["dataset"]["revision"] = "generator-v2"
    data["dataset"]["fingerprint"] = "0" * 64


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_results(tmp_path_factory)


def _box(root: Path, model: str, task: str) -> float:
    return json.loads((root / model / f"{task}.json").read_text())["metrics"]["box_score"]


def test_columns_rows_average_and_rank(synth_dir, tmp_path):
    a = write_variant(synth_dir, tmp_path / "a", model="model-a", edit=complete)
    b = write_variant(synth_dir, tmp_path / "b", model="model-b", edit=shifted(0.1))
    lb1, lb2 = build_leaderboard(load_results([a, b])), build_leaderboard(load_results([b, a]))

    metrics = json.loads((a / "model-a" / f"{TASKS[0]}.json").read_text())["metrics"]
    expected = [(t, m) for t in sorted(TASKS) for m in ["box_score"] + sorted(set(metrics) - {"box_score"})]
    assert [(c.key, m) for c in lb1.columns for m in c.metrics] == expected
    assert [c.flag for c in lb1.columns] == [None, None]
    lb2.generated = lb1.generated
    assert to_markdown(lb1) == to_markdown(lb2)
    assert list(measured_frame(lb1).columns) == list(measured_frame(lb2).columns)

    assert [(r.model, r.rank) for r in lb1.rows] == [("model-b", 1), ("model-a", 2)]
    row_a = lb1.rows[1]
    assert row_a.average == pytest.approx(sum(_box(a, "model-a", t) for t in TASKS) / 2)
    assert row_a.family == "meter" and row_a.parameters > 0 and row_a.map_method.startswith("attention")
    assert row_a.provenance[TASKS[0]]["file"] == f"a/model-a/{TASKS[0]}.json"
    assert row_a.provenance[TASKS[0]]["alignbench"] == alignbench.__version__


def test_partial_runs_are_kept_apart(synth_dir, tmp_path):
    a = write_variant(synth_dir, tmp_path / "a", model="model-a", edit=complete)
    lb = build_leaderboard(load_results([a, synth_dir]))  # synth_dir: the real --limit run
    keys = [c.key for c in lb.columns]
    for task in TASKS:
        flagged = f"{task} [partial {LIMIT} of 200]"
        assert flagged in keys
        partial_row = next(r for r in lb.rows if r.model == MODEL)
        assert set(partial_row.scores) == {f"{t} [partial {LIMIT} of 200]" for t in TASKS}
        assert partial_row.scores[flagged]["box_score"] == _box(synth_dir, MODEL, task)
        assert any(flagged in n and f"{MODEL}/{task}.json" in n for n in lb.notes)
    partial_row = next(r for r in lb.rows if r.model == MODEL)
    assert partial_row.rank is None and partial_row.average is None
    assert next(r for r in lb.rows if r.model == "model-a").rank == 1


def test_protocol_and_dataset_mismatches_are_kept_apart(synth_dir, tmp_path):
    dirs = [
        write_variant(synth_dir, tmp_path / "a", model="model-a", edit=complete),
        write_variant(synth_dir, tmp_path / "b", model="model-b", edit=shifted(0.05)),
        write_variant(synth_dir, tmp_path / "c", model="model-c", edit=other_protocol),
        write_variant(synth_dir, tmp_path / "d", model="model-d", edit=other_dataset),
    ]
    lb = build_leaderboard(load_results(dirs))
    task = TASKS[0]
    assert [c.key for c in lb.columns if c.task == task] == [
        task, f"{task} [dataset revision=generator-v2]", f"{task} [protocol head_reduction=mean]",
    ]
    rows = {r.model: r for r in lb.rows}
    assert set(rows["model-c"].scores) == {f"{t} [protocol head_reduction=mean]" for t in TASKS}
    assert set(rows["model-d"].scores) == {f"{t} [dataset revision=generator-v2]" for t in TASKS}
    assert rows["model-c"].rank is None and rows["model-d"].rank is None
    assert [rows["model-b"].rank, rows["model-a"].rank] == [1, 2]
    assert sum("kept apart" in n for n in lb.notes) == 4


def test_results_without_maps_join_every_row_of_their_model(synth_dir, tmp_path):
    a = write_variant(synth_dir, tmp_path / "a", model="model-a", edit=complete)

    def no_maps(data: dict) -> None:
        complete(data)
        data.update(task="synth-hard-negative", map_method=None, main_metric="accuracy", metrics={"accuracy": 0.75})

    h = write_variant(synth_dir, tmp_path / "h", model="model-a", edit=no_maps, tasks=(TASKS[0],))
    lb = build_leaderboard(load_results([a, h]))
    (row,) = lb.rows
    assert row.scores["synth-hard-negative"] == {"accuracy": 0.75}
    assert row.map_method.startswith("attention")
    assert row.average == pytest.approx((0.75 + _box(a, "model-a", TASKS[0]) + _box(a, "model-a", TASKS[1])) / 3)


def test_files_that_are_not_results_are_named(synth_dir, tmp_path):
    a = write_variant(synth_dir, tmp_path / "a", model="model-a", edit=complete)
    (a / "model-a" / "notes.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ResultFileError, match=r"notes\.json: not an alignbench result file.*'task' is a required property"):
        load_results([a])
    (a / "model-a" / "notes.json").write_text("{not json")
    with pytest.raises(ResultFileError, match=r"notes\.json: not a readable JSON"):
        load_results([a])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResultFileError, match="no result files found"):
        load_results([tmp_path / "empty"])


def test_two_results_for_one_cell_are_an_error(synth_dir, tmp_path):
    a = write_variant(synth_dir, tmp_path / "a", model="model-a", edit=complete)
    b = write_variant(synth_dir, tmp_path / "b", model="model-a", edit=complete)
    with pytest.raises(ResultFileError, match="two results for model 'model-a'.*a/model-a/.*b/model-a/"):
        build_leaderboard(load_results([a, b]))


@pytest.fixture()
def reported_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "reported.yaml"
    path.write_text(
        "reported:\n"
        "  - model: Paper model\n"
        "    source: https://arxiv.org/abs/0000.00000 Table 1\n"
        "    scores:\n"
        f"      {TASKS[0]}: {{box_score: 0.5}}\n"
    )
    return path


def test_renderers(synth_dir, tmp_path, reported_yaml):
    a = write_variant(synth_dir, tmp_path / "a", model="model-a", edit=complete)
    lb = build_leaderboard(load_results([a, synth_dir]), title="test table", reported=load_reported(reported_yaml))

    page = to_html(lb)
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page and "<script>" in page
    assert not re.search(r"\b(src|href)\s*=|url\(|@import|<link", page), "the page must load nothing from elsewhere"
    assert "model-a" in page and "Paper model" in page and f"a/model-a/{TASKS[0]}.json" in page

    frame = pd.read_csv(io.StringIO(to_csv(lb)))
    assert list(frame.columns) == list(measured_frame(lb).columns)
    row = frame[frame["model"] == "model-a"].iloc[0]
    assert row[f"{TASKS[0]}: box_score*"] == _box(a, "model-a", TASKS[0])

    assert Leaderboard.from_dict(json.loads(to_json(lb))).to_dict() == lb.to_dict()

    md = to_markdown(lb)
    result = json.loads((synth_dir / MODEL / f"{TASKS[1]}.json").read_text())
    assert f"reports-synth-results/{MODEL}/{TASKS[1]}.json | {result['environment']['alignbench']} | {result['run']['finished_at']}" in md
    measured, reported = md.split("## Reported")
    assert "Paper model" not in measured and "Paper model" in reported and "arxiv.org/abs/0000.00000" in reported

    png = write_chart(lb, tmp_path / "chart.png")
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 1000


def test_reported_rows_need_a_source(tmp_path):
    bad = tmp_path / "reported.yaml"
    bad.write_text("reported:\n  - model: X\n    scores: {t: {m: 1.0}}\n")
    with pytest.raises(ValueError, match=r"reported\.yaml: invalid reported rows at reported/0: 'source' is a required property"):
        load_reported(bad)


def test_cli_writes_every_format(synth_dir, tmp_path, reported_yaml):
    a = write_variant(synth_dir, tmp_path / "a", model="model-a", edit=complete)
    out = tmp_path / "out"
    args = [str(a), "--output", str(out / "t.md"), "--output", str(out / "t.json"), "--output", str(out / "t.html"),
            "--output", str(out / "t.csv"), "--chart", str(out / "t.png"), "--reported", str(reported_yaml)]
    res = CliRunner().invoke(leaderboard_cmd, args)
    assert res.exit_code == 0, res.output
    assert json.loads((out / "t.json").read_text())["rows"][0]["model"] == "model-a"
    assert (out / "t.md").read_text().startswith("# alignbench leaderboard")
    assert (out / "t.png").stat().st_size > 0 and (out / "t.html").stat().st_size > 0 and (out / "t.csv").stat().st_size > 0

    res = CliRunner().invoke(leaderboard_cmd, [str(a), "--output", "x.md", "--output", "x.html", "--format", "md"])
    assert res.exit_code == 2 and "single --output" in res.output
