"""Grad-CAM's family defaults (ALBEF, BLIP): the cross-attention layer the authors' grounding
visualisations read, heads averaged, unless a task or run sets ``protocol.layer`` /
``protocol.head_reduction``; results record the parameters that were used."""

from __future__ import annotations

import copy

import pytest
import torch

import alignbench
from alignbench.models.albef import ALBEF_GRADCAM
from alignbench.models.base import MapMethod
from alignbench.tasks.base import RunOptions

GRADCAM_MODELS = ["albef-tiny-random", "blip-tiny-random"]
CAPTION = "a red cube left of a blue ball"


@pytest.fixture(scope="module")
def models() -> dict[str, alignbench.models.base.AlignmentModel]:
    return {name: alignbench.load_model(name) for name in GRADCAM_MODELS}


def _maps(model, method: MapMethod) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps ``[L, gh, gw]`` of one caption and the mask of its word tokens."""
    text = model.tokenize([CAPTION])
    px = torch.randn(1, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():  # as the runner calls it: gradients must still flow
        return model.text_image_maps(px, text, method)[0], ~text.special[0]


@pytest.mark.parametrize("name", GRADCAM_MODELS)
def test_default_gradcam_gives_phrase_maps_and_is_recorded(models, name, tmp_path):
    model = models[name]
    (task,) = alignbench.load_tasks(["align-bench-synth-local"])
    opts = RunOptions(limit=3, map_method="gradcam", quiet=True)
    method = task.map_method(opts, model)
    # the tiny models have 2 cross-attention layers, fewer than the authors' layer: the last but one
    assert method == MapMethod("gradcam", layer=model.num_map_layers - 2, head_reduction="mean")
    maps, words = _maps(model, method)
    assert (maps[words].sum(dim=(-1, -2)) > 0).all(), "every word token has a non-zero Grad-CAM map"
    (result,) = alignbench.evaluate(model, [task], model_name=name, output_dir=tmp_path, options=opts)
    assert result["map_method"] == {**method.as_dict(), "phrase_maps": "sum of phrase token rows"}
    assert result["counts"]["phrases_scored"] > 0 and result["metrics"]["box_score"] > 0


@pytest.mark.parametrize("name", GRADCAM_MODELS)
def test_protocol_layer_overrides_the_default(models, name):
    model = models[name]
    (task,) = alignbench.load_tasks(["align-bench-synth-local"], options={"protocol": {"layer": -1}})
    method = task.map_method(RunOptions(map_method="gradcam"), model)
    assert method == MapMethod("gradcam", layer=-1, head_reduction="mean")
    maps, words = _maps(model, method)
    # on the last layer only the global token reaches the ITM head: why the default is earlier
    assert maps[words].abs().sum() == 0 and maps[0].sum() > 0
    # the attention maps keep the reference protocol's layer and head reduction
    (reference,) = alignbench.load_tasks(["align-bench-synth-local"])
    assert reference.map_method(RunOptions(map_method="attention"), model) == MapMethod("attention", layer=-1, head_reduction="max")


def test_authors_layers_on_the_published_depth():
    """With as many text layers as the released models: ALBEF's BERT layer 8 (the third fusion
    layer), LAVIS' BLIP block 6."""
    albef = alignbench.load_model("albef-tiny-random", model_config={"preset": "tiny", "num_layers": 12, "fusion_layer": 6})
    assert albef.default_map_method("gradcam") == ALBEF_GRADCAM == MapMethod("gradcam", layer=8 - 6, head_reduction="mean")
    config = copy.deepcopy(alignbench.MODELS.get("blip-tiny-random").config)
    config["architecture"]["text_config"]["num_hidden_layers"] = 12
    blip = alignbench.load_model("blip-tiny-random", model_config=config)
    assert blip.default_map_method("gradcam") == MapMethod("gradcam", layer=6, head_reduction="mean")
    assert blip.default_map_method("attention") == MapMethod("attention")
