"""The training loop: deterministic, learns, and writes checkpoints the METER adapter loads."""

from __future__ import annotations

import json

import pytest
import torch

import alignbench
from alignbench.train import TrainConfig, Trainer, train

FAST = dict(steps=4, batch_size=8, data_size="mini", warmup_steps=1, log_every=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "glscl.ckpt"
    return train(TrainConfig(recipe="glscl", **FAST), out, quiet=True)


def test_deterministic_given_seed(trained, tmp_path):
    again = train(TrainConfig(recipe="glscl", **FAST), tmp_path / "again.ckpt", quiet=True)
    a = torch.load(trained, weights_only=True)["state_dict"]
    b = torch.load(again, weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    other_seed = train(TrainConfig(recipe="glscl", **{**FAST, "seed": 1}), tmp_path / "s1.ckpt", quiet=True)
    c = torch.load(other_seed, weights_only=True)["state_dict"]
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_log_has_all_glscl_objectives_and_meter_recipe_lacks_completion(trained):
    log = [json.loads(x) for x in trained.with_suffix(".log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [0, 1, 2, 3]
    assert {"itc", "itm", "mlm", "mgsc", "mltc"} <= set(log[0])
    trainer = Trainer(TrainConfig(recipe="meter", **FAST))
    text = trainer.adapter.tokenize(trainer.data.captions[:4])
    assert set(trainer.losses(trainer.data.pixel_values[:4], text)) == {"itc", "itm", "mlm"}


def test_training_reduces_the_loss():
    trainer = Trainer(TrainConfig(recipe="meter", steps=30, batch_size=8, data_size="mini", warmup_steps=1, lr=1e-3, log_every=29))
    log = trainer.train(quiet=True)
    assert log[-1]["mlm"] < log[0]["mlm"] - 0.5


def test_checkpoint_loads_through_the_meter_adapter(trained):
    model = alignbench.load_model("meter-tiny-random", checkpoint=trained)
    saved = torch.load(trained, weights_only=True)
    assert saved["alignbench_train"]["recipe"] == "glscl"
    assert torch.equal(model.model.itm_score.fc.weight, saved["state_dict"]["itm_score.fc.weight"])
    assert model.describe()["checkpoint_sha256"]


def test_safetensors_checkpoint_keeps_weights_and_training_record(trained, tmp_path):
    trainer = Trainer(TrainConfig(recipe="meter", **FAST))
    path = tmp_path / "meter.safetensors"
    trainer.save(path, [{"step": 0, "total": 1.0}])
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        record = json.loads(f.metadata()["alignbench_train"])
        assert set(f.keys()) == set(trainer.model.state_dict())
    assert record["recipe"] == "meter" and record["torch_threads"] == torch.get_num_threads()
    model = alignbench.load_model("meter-tiny-random", checkpoint=path)
    assert all(torch.equal(v, trainer.model.state_dict()[k]) for k, v in model.model.state_dict().items())
