"""Task definitions: schema validation with clear errors, suites, protocol presets."""

from __future__ import annotations

import pytest
import yaml

import alignbench
from alignbench.protocol import REFERENCE, V2
from alignbench.tasks.config import TaskDefinitionError, load_task_definitions, parse_task_definition


def test_builtin_definitions_are_valid_and_listed():
    names = {row["name"] for row in alignbench.list_tasks()}
    assert {"align-bench-global", "align-bench-local", "align-bench-global-v2", "align-bench-local-v2", "align-bench"} <= names


def test_reference_and_v2_tasks_use_their_protocols():
    assert alignbench.load_task("align-bench-global").protocol == REFERENCE
    assert alignbench.load_task("align-bench-local-v2").protocol == V2
    assert alignbench.expand_task_names(["align-bench", "align-bench-global"]) == ["align-bench-global", "align-bench-local"]


def test_protocol_override_from_task_options():
    task = alignbench.load_task("align-bench-global", options={"protocol": {"head_reduction": "mean"}})
    assert task.protocol.head_reduction == "mean" and task.protocol.name == "reference"
    with pytest.raises(ValueError, match="unknown protocol parameter"):
        alignbench.load_task("align-bench-global", options={"protocol": {"heads": "mean"}})


@pytest.mark.parametrize(
    "broken,message",
    [
        ({"probe": "sideways"}, "probe"),
        ({"metrics": []}, "metrics"),
        ({"main_metric": "recall"}, "main_metric"),
        ({"dataset": {"hub_id": "x/y"}}, "source"),
        ({"unknown_key": 1}, "unknown_key"),
    ],
)
def test_schema_errors_name_file_and_field(tmp_path, broken, message):
    good = yaml.safe_load(open(load_task_definitions()["align-bench-global"].source_file))
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**good, **broken}))
    with pytest.raises(TaskDefinitionError, match=message) as e:
        load_task_definitions([tmp_path])
    assert str(path) in str(e.value)


def test_duplicate_names_are_an_error(tmp_path):
    d = {"name": "x", "description": "d", "suite": ["align-bench-global"]}
    for f in ("a.yaml", "b.yaml"):
        (tmp_path / f).write_text(yaml.safe_dump(d))
    with pytest.raises(TaskDefinitionError, match="defined twice"):
        load_task_definitions([tmp_path])
    assert parse_task_definition(d, "inline").is_suite
