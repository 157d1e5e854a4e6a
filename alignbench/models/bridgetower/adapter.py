"""BridgeTower models behind the :class:`~alignbench.models.base.AlignmentModel` contract.

BridgeTower is the closest relative of the METER layout: co-attention layers whose text side
cross-attends to the CLIP ViT output ``[CLS] + patches``. With ``output_attentions=True`` the
transformers model returns, per cross-modal layer, only the **self**-attention of its text and
image sides (``outputs.attentions[i] == (text_self, image_self)``); the text->image
cross-attention is read with a forward hook on ``cross_modal_text_layers[i].crossattention``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from transformers import BridgeTowerConfig, BridgeTowerForImageAndTextRetrieval, BridgeTowerImageProcessor, PretrainedConfig

from ..base import MapMethod, TextBatch
from ..hf_common import HFModelAdapter, capture_outputs, mask_padding, patch_maps


class BridgeTowerAdapter(HFModelAdapter):
    """A BridgeTower ITM model with its RoBERTa tokenizer.

    Map method ``attention``: text->image cross-attention probabilities of one cross-modal
    text layer, image [CLS] column dropped, not renormalised, heads reduced by max or mean
    (the ALIGN-BENCH reference map with the defaults). Match: ITM softmax probability of
    "match". Images are squashed to a fixed square (288 x 288 for the released model, an
    18 x 18 grid) instead of ``BridgeTowerImageProcessor``'s shorter-side resize and padding.
    """

    family: ClassVar[str] = "bridgetower"
    capabilities: ClassVar[frozenset[str]] = frozenset({"maps", "match"})
    map_methods: ClassVar[tuple[str, ...]] = ("attention",)
    hf_model = BridgeTowerForImageAndTextRetrieval
    hf_config = BridgeTowerConfig
    hf_processor = BridgeTowerImageProcessor
    model: BridgeTowerForImageAndTextRetrieval

    @staticmethod
    def max_text_length(text_config: PretrainedConfig) -> int:
        """RoBERTa positions start after the pad id."""
        return text_config.max_position_embeddings - text_config.pad_token_id - 1

    @property
    def num_map_layers(self) -> int:
        return len(self.model.bridgetower.cross_modal_text_layers)

    def _forward(self, pixel_values: torch.Tensor, text: TextBatch) -> Any:
        device = self.device()
        return self.model(
            input_ids=text.input_ids.to(device),
            attention_mask=text.attention_mask.to(device),
            pixel_values=pixel_values.to(device),
            return_dict=True,
        )

    @torch.no_grad()
    def text_image_maps(self, pixel_values: torch.Tensor, text: TextBatch, method: MapMethod) -> torch.Tensor:
        """``[B, L, gh, gw]`` text->image cross-attention of layer ``method.layer``; padding rows are 0."""
        layer = self.check_method(method)
        cross = self.model.bridgetower.cross_modal_text_layers[layer].crossattention
        with capture_outputs(cross) as outputs:
            self._forward(pixel_values, text)
        (_, probs), = outputs  # BridgeTowerAttention returns (context, probabilities)
        return mask_padding(patch_maps(probs, self.grid_size, method.head_reduction), text.attention_mask)

    @torch.no_grad()
    def match_scores(self, pixel_values: torch.Tensor, text: TextBatch) -> torch.Tensor:
        """ITM softmax probability of "match", ``[B]``."""
        return self._forward(pixel_values, text).logits.float().softmax(dim=-1)[:, 1]


build = BridgeTowerAdapter.build  # the family builder alignbench.models.factory calls
