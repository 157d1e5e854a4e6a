"""The trained tiny models shipped inside the package (issue 7): registered, verified by
sha256, loaded offline, and different from the random initialisation they started from."""

from __future__ import annotations

import json

import pytest
import torch

import alignbench
from alignbench.models import hub
from alignbench.models.factory import MODELS

BUNDLED = ["glscl-tiny", "meter-tiny"]


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_checkpoint_loads_offline_and_is_trained(name: str) -> None:
    spec = MODELS.get(name)
    assert spec.checkpoint is not None and spec.checkpoint.bundled
    model = alignbench.load_model(name)
    info = model.describe()
    assert info["checkpoint_sha256"] == spec.checkpoint.sha256
    assert info["source"].startswith("bundled:")
    random = alignbench.load_model("meter-tiny-random")
    trained, init = model.model.state_dict(), random.model.state_dict()
    assert trained.keys() == init.keys()
    assert not torch.equal(trained["itm_score.fc.weight"], init["itm_score.fc.weight"])


def test_bundled_checkpoints_record_their_recipe(tmp_path) -> None:
    from safetensors import safe_open

    for name, recipe in zip(BUNDLED, ["glscl", "meter"]):
        with safe_open(str(hub.BUNDLED_DIR / MODELS.get(name).checkpoint.bundled), "pt") as f:
            record = json.loads(f.metadata()["alignbench_train"])
        assert record["recipe"] == recipe and record["seed"] == 0


def test_missing_or_altered_bundled_checkpoint_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(hub, "BUNDLED_DIR", tmp_path)
    with pytest.raises(hub.CheckpointNotFoundError, match="missing from this installation.*reinstall"):
        alignbench.load_model("glscl-tiny")
    (tmp_path / MODELS.get("glscl-tiny").checkpoint.bundled).write_bytes(b"not the shipped file")
    with pytest.raises(hub.CheckpointNotFoundError, match="does not match the registered sha256"):
        alignbench.load_model("glscl-tiny")
