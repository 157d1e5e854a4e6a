"""The documented example of adding a model family (examples/colour_word_model.py) works
through the public API: registered by name, listed, and scored by the runner."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from PIL import Image

import alignbench
from alignbench import api

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "colour_word_model.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("colour_word_model", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_model_puts_a_colour_word_on_its_patches(example):
    model = alignbench.load_model("colour-words")
    image = Image.new("RGB", (128, 128), (128, 128, 128))
    image.paste((230, 20, 20), (96, 16, 112, 32))  # one red patch: row 1, column 6 of the 8x8 grid
    text = model.tokenize(["a red square", "a shape"])
    maps = model.text_image_maps(model.image_transform()(image)[None].expand(2, -1, -1, -1), text, model.default_map_method("colour-similarity"))
    assert maps.shape == (2, text.input_ids.shape[1], 8, 8)
    assert divmod(int(maps[0, 2].argmax()), 8) == (1, 6)  # "red"
    assert torch.allclose(maps[0, 0], maps[0, 1:].sum(0), atol=1e-5)  # the global token: all the caption's colours
    assert float(maps[1].max()) < 1e-3  # no colour word: no relevance anywhere


def test_example_model_is_listed_and_outscores_the_random_meter_model(example):
    row = next(r for r in api.list_models() if r["name"] == "colour-words")
    assert (row["family"], row["parameters"], row["capabilities"], row["source"]) == ("colour-words", 0, ["maps"], "none (training-free)")
    colour = {r["task"]: r["metrics"]["box_score"] for r in example.main(limit=30)}
    opts = alignbench.RunOptions(limit=30, quiet=True)
    random = alignbench.evaluate(alignbench.load_model("meter-tiny-random"), alignbench.load_tasks(["align-bench-synth"]),
                                 model_name="meter-tiny-random", options=opts)
    for result in random:
        assert colour[result["task"]] > result["metrics"]["box_score"] + 0.1
