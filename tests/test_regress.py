"""`alignbench regress` against published tables (issue 6, items 3-4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from test_leaderboard import TASKS, complete, other_dataset, other_protocol, shifted, synth_results, write_variant

import alignbench
from alignbench.cli_reports import regress_cmd
from alignbench.leaderboard import build_leaderboard, load_results, read_leaderboard, to_json
from alignbench.regress import DEFAULT_TOLERANCE, compare

PUBLISHED_SYNTHETIC = Path(__file__).resolve().parents[1] / "leaderboards" / "synthetic.json"


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_results(tmp_path_factory)


@pytest.fixture()
def baseline(synth_dir: Path, tmp_path: Path) -> Path:
    """A published table of one complete run of model-a."""
    src = write_variant(synth_dir, tmp_path / "published-run", model="model-a", edit=complete)
    path = tmp_path / "published.json"
    path.write_text(to_json(build_leaderboard(load_results([src]))))
    return path


def regress(baseline: Path, results: Path, *extra: str) -> tuple[int, str]:
    res = CliRunner().invoke(regress_cmd, ["--baseline", str(baseline), str(results), *extra])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    return res.exit_code, res.output


def test_same_numbers_pass(synth_dir, baseline, tmp_path):
    fresh = write_variant(synth_dir, tmp_path / "fresh", model="model-a", edit=complete)
    code, out = regress(baseline, fresh)
    assert code == 0, out
    assert "8 ok" in out and "regression check passed" in out


@pytest.mark.parametrize(
    ("delta", "extra", "code", "status"),
    [
        (-0.01, (), 1, "drop"),
        (-0.004, (), 0, "ok"),
        (-0.01, ("--tolerance", "0.02"), 0, "ok"),
        (+0.01, (), 0, "improved"),
    ],
)
def test_drops_beyond_tolerance_fail(synth_dir, baseline, tmp_path, delta, extra, code, status):
    fresh = write_variant(synth_dir, tmp_path / "fresh", model="model-a", edit=shifted(delta, TASKS[0]))
    got, out = regress(baseline, fresh, *extra)
    assert got == code, out
    checks = compare(read_leaderboard(baseline), load_results([fresh]), float(extra[1]) if extra else DEFAULT_TOLERANCE)
    (changed,) = [c for c in checks if c.column == TASKS[0] and c.metric == "box_score"]
    assert changed.status == status and changed.delta == pytest.approx(delta)
    assert all(c.status == "ok" for c in checks if c is not changed)
    if status == "improved":
        assert "republish" in out


def test_missing_result_fails(synth_dir, baseline, tmp_path):
    fresh = write_variant(synth_dir, tmp_path / "fresh", model="model-a", edit=complete, tasks=(TASKS[0],))
    code, out = regress(baseline, fresh)
    assert code == 1 and "1 missing" in out
    (missing,) = [c for c in compare(read_leaderboard(baseline), load_results([fresh])) if c.status == "missing"]
    assert missing.column == TASKS[1] and missing.detail == f"no fresh result for task {TASKS[1]}"


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (other_protocol, "map method attention (layer -1, mean heads)"),
        (lambda d: (complete(d), d["protocol"].update(box_coords="float")), "protocol box_coords=float"),
        (other_dataset, "dataset revision=generator-v2"),
        (lambda d: None, "20 of 200 samples (partial)"),  # the real --limit run against a complete one
    ],
)
def test_mismatches_fail(synth_dir, baseline, tmp_path, edit, why):
    fresh = write_variant(synth_dir, tmp_path / "fresh", model="model-a", edit=edit)
    checks = compare(read_leaderboard(baseline), load_results([fresh]))
    assert {c.status for c in checks} == {"mismatch"} and all(why in c.detail for c in checks)
    code, out = regress(baseline, fresh)
    assert code == 1 and "mismatch" in out


def test_other_checkpoint_is_a_mismatch(synth_dir, baseline, tmp_path):
    def other_weights(data: dict) -> None:
        complete(data)
        data["model_info"]["checkpoint_sha256"] = "f" * 64

    fresh = write_variant(synth_dir, tmp_path / "fresh", model="model-a", edit=other_weights)
    checks = compare(read_leaderboard(baseline), load_results([fresh]))
    assert {c.status for c in checks} == {"mismatch"} and all("checkpoint sha256 ffffffffffff" in c.detail for c in checks)


def test_results_not_in_the_table_are_reported_not_failed(synth_dir, baseline, tmp_path):
    fresh = write_variant(synth_dir, tmp_path / "fresh", model="model-a", edit=complete)
    write_variant(synth_dir, fresh, model="model-new", edit=complete)
    code, out = regress(baseline, fresh)
    assert code == 0 and "2 new" in out


@pytest.mark.slow
def test_published_synthetic_table_holds(tmp_path):
    """The ordinary-CI regression check: the bundled tiny models, evaluated now on the synthetic
    suite, reproduce leaderboards/synthetic.json within the default tolerance."""
    published = read_leaderboard(PUBLISHED_SYNTHETIC)
    assert published.rows, f"{PUBLISHED_SYNTHETIC} has no measured rows"
    tasks = alignbench.load_tasks(sorted({c.task for c in published.columns}))
    for name in sorted({r.model for r in published.rows}):
        model = alignbench.load_model(name)
        alignbench.evaluate(model, tasks, model_name=name, output_dir=tmp_path, options=alignbench.RunOptions(batch_size=25, quiet=True))
    checks = compare(published, load_results([tmp_path]))
    failed = [c for c in checks if c.failed]
    assert not failed, "\n".join(f"{c.status}: {c.model} {c.column} {c.metric}: {c.detail}" for c in failed)
    assert any(c.status == "ok" and c.metric for c in checks)


def test_nan_is_missing_not_within_tolerance(synth_dir, baseline, tmp_path):
    def nan_score(data: dict) -> None:
        complete(data)
        data["metrics"]["box_score"] = float("nan")

    fresh = write_variant(synth_dir, tmp_path / "fresh", model="model-a", edit=nan_score, tasks=TASKS)
    checks = compare(read_leaderboard(baseline), load_results([fresh]))
    assert sorted(c.column for c in checks if c.status == "missing") == sorted(TASKS)
    assert regress(baseline, fresh)[0] == 1
