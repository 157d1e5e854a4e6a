"""``alignbench list models`` and the API rows behind it: every value is known without weights
and agrees with the models that ``load_model`` builds."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from click.testing import CliRunner

import alignbench
from alignbench import api
from alignbench import cli as cli_module
from alignbench.cli import cli
from alignbench.models.factory import CONFIG_DIR, FAMILIES, MODELS, ModelSpec

TINY = [name for name in MODELS.names() if name.endswith("-tiny-random")]


@pytest.fixture(scope="module")
def rows() -> dict[str, dict]:
    return {row["name"]: row for row in api.list_models()}


def _listed(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """``alignbench list models`` on a wide console: the table line of every model by name."""
    monkeypatch.setattr(cli_module.console, "width", 250)
    result = CliRunner().invoke(cli, ["list", "models"])
    assert result.exit_code == 0, result.output
    return {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 2}


def test_every_registered_model_is_listed(rows):
    assert sorted(rows) == MODELS.names()
    unknown = [name for name, row in rows.items() if None in (row["parameters"], row["capabilities"], row["map_methods"])]
    assert not unknown, "every built-in model's parameters, capabilities and map methods are known offline"


@pytest.mark.parametrize("name", TINY)
def test_tiny_rows_match_the_built_model(rows, name):
    model = alignbench.load_model(name)
    row = rows[name]
    assert row["family"] == model.family
    assert row["parameters"] == sum(p.numel() for p in model.parameters()) == model.describe()["parameters"]
    assert row["capabilities"] == sorted(model.capabilities)
    assert row["map_methods"] == list(model.map_methods)
    assert row["source"] == "random init (no download)" == model.describe()["source"]


def test_hub_models_name_their_weights_and_documented_parameters(rows):
    for name in ("blip-itm-base-coco", "blip-itm-large-coco", "vilt-b32-coco", "flava-full", "bridgetower-base-itm-mlm"):
        data = json.loads((CONFIG_DIR / f"{name}.json").read_text())
        assert rows[name]["source"] == f"hf://{data['config']['pretrained']}@{data['config']['revision']}"
        assert rows[name]["parameters"] == data["parameters"] and data["parameters_note"]
    assert rows["blip-itm-base-coco"]["source"] == "hf://Salesforce/blip-itm-base-coco@main"


def test_offline_architectures_are_counted_exactly(rows):
    with torch.device("meta"):
        vit_b16 = open_clip.create_model("ViT-B-16", device="meta")  # open_clip's own builder, not the adapter's
    assert rows["clip-vit-b-16"]["parameters"] == sum(p.numel() for p in vit_b16.parameters())
    assert rows["clip-vit-l-14"]["parameters"] > rows["clip-vit-b-16"]["parameters"]
    # the METER-layout and ALBEF-layout entries share one architecture each
    assert rows["glscl-base"]["parameters"] == rows["scl-base"]["parameters"] == rows["meter-base"]["parameters"] > 10**8
    assert rows["albef-14m"]["parameters"] == rows["tcl-4m"]["parameters"] > 10**8
    assert rows["glscl-base"]["source"] == MODELS.get("glscl-base").checkpoint.describe()


def test_a_family_that_does_not_annotate_its_adapter_lists_unknowns(monkeypatch):
    monkeypatch.setitem(FAMILIES._entries, "plugin", lambda config, **kwargs: None)
    spec = ModelSpec(name="plugin-model", family="plugin", description="")
    monkeypatch.setitem(MODELS._entries, "plugin-model", spec)
    row = next(r for r in api.list_models() if r["name"] == "plugin-model")
    assert row["parameters"] is row["capabilities"] is row["map_methods"] is None
    assert row["source"] == "random init (no download)"
    assert [cell.strip() for cell in _listed(monkeypatch)["plugin-model"].split("│")[3:6]] == ["?", "?", "?"]


def test_cli_renders_the_rows(rows, monkeypatch):
    lines = _listed(monkeypatch)
    assert sorted(lines) == sorted(rows)
    blip = lines["blip-tiny-random"]
    assert f"{rows['blip-tiny-random']['parameters']:,}" in blip
    assert "embed, maps, match" in blip and "attention, gradcam" in blip
    assert "hf://Salesforce/blip-itm-base-coco@main" in lines["blip-itm-base-coco"]


def test_piped_output_keeps_one_table_row_per_line(monkeypatch):
    from alignbench.console import PIPED_WIDTH, make_console

    monkeypatch.delenv("COLUMNS", raising=False)
    assert make_console().width == PIPED_WIDTH  # pytest's stdout is not a terminal
    monkeypatch.setenv("COLUMNS", "100")
    assert make_console().width == 100
