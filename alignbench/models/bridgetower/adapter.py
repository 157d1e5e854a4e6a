"""BridgeTower models behind the :class:`~alignbench.models.base.AlignmentModel` contract.

BridgeTower is the closest relative of the METER layout: co-attention layers whose text side
cross-attends to the CLIP ViT output ``[CLS] + patches``. With ``output_attentions=True`` the
transformers model returns, per cross-modal layer, only the **self**-attention of its text and
image sides (``outputs.attentions[i] == (text_self, image_self)``); the text->image
cross-attention is read with a forward hook on ``cross_modal_text_layers[i].crossattention``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import BridgeTowerConfig, BridgeTowerForImageAndTextRetrieval, BridgeTowerImageProcessor

from ..base import MapMethod, TextBatch
from ..hf_common import (
    HFAdapter,
    TextProcessor,
    capture_outputs,
    check_image_size,
    load_hf_model,
    load_text_and_processor,
    mask_padding,
    patch_maps,
    pretrained_source,
    square_transform,
)


class BridgeTowerAdapter(HFAdapter):
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
    model: BridgeTowerForImageAndTextRetrieval

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


def build(
    config: Mapping[str, Any],
    *,
    checkpoint: str | Path | None = None,
    tokenizer: str | Path | None = None,
    image_size: int | None = None,
    seed: int = 0,
) -> BridgeTowerAdapter:
    """A BridgeTower adapter in eval mode.

    ``config``: ``{"pretrained": hub id, "revision": ...}`` or ``{"architecture":
    BridgeTowerConfig keyword arguments}`` (seeded random weights, no download);
    ``checkpoint`` (a save_pretrained folder or a file in one) replaces ``pretrained``.
    """
    source = pretrained_source(config, checkpoint)
    model, info = load_hf_model(BridgeTowerForImageAndTextRetrieval, BridgeTowerConfig, config, source, seed=seed)
    cfg = model.config
    text_cfg = cfg.text_config
    tok, processor = load_text_and_processor(
        source, tokenizer, BridgeTowerImageProcessor, vocab_size=text_cfg.vocab_size, family="bridgetower"
    )
    size = check_image_size(image_size, cfg.vision_config.image_size, "bridgetower")
    # RoBERTa positions start after the pad id
    max_length = min(tok.model_max_length, text_cfg.max_position_embeddings - text_cfg.pad_token_id - 1)
    transform = square_transform(processor, size)
    adapter = BridgeTowerAdapter(model, TextProcessor(tok, max_length), transform, cfg.vision_config.patch_size, info)
    return adapter.eval()
