"""BLIP ITM models behind the :class:`~alignbench.models.base.AlignmentModel` contract.

Maps come from the cross-attention of the image-grounded text encoder (every text layer
cross-attends to the ViT output ``[CLS] + patches``). The ITM path feeds the tokenizer's ids
as they are (``[CLS]`` first), as transformers' ``BlipForImageTextRetrieval`` does; the
original BLIP code replaces the first id by ``[ENC]`` for ITM, which the transformers port does
not.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import BlipConfig, BlipForImageTextRetrieval, BlipImageProcessor

from ..base import MapMethod, TextBatch
from ..hf_common import (
    HFAdapter,
    TextProcessor,
    check_image_size,
    gradients_enabled,
    load_hf_model,
    load_text_and_processor,
    mask_padding,
    patch_maps,
    pretrained_source,
    square_transform,
)


class BlipAdapter(HFAdapter):
    """A BLIP ITM model with its BERT tokenizer and image processor.

    Map methods: ``attention`` (text->image cross-attention probabilities of one text layer,
    image [CLS] column dropped, not renormalised, heads reduced by max or mean) and
    ``gradcam`` (gradient of the ITM "match" logit w.r.t. those probabilities times the
    probabilities, clamped at 0, heads averaged whatever ``head_reduction`` says, as BLIP and
    ALBEF visualise grounding). Match: ITM softmax probability of "match". Embed: the ITC
    projections of the image and text [CLS] (unnormalised).
    """

    family: ClassVar[str] = "blip"
    capabilities: ClassVar[frozenset[str]] = frozenset({"maps", "match", "embed"})
    map_methods: ClassVar[tuple[str, ...]] = ("attention", "gradcam")
    model: BlipForImageTextRetrieval

    @property
    def num_map_layers(self) -> int:
        return self.model.config.text_config.num_hidden_layers

    def _fused(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        """Image-grounded text encoding with attention probabilities."""
        device = self.device()
        image_embeds = self.model.vision_model(pixel_values=pixel_values.to(device)).last_hidden_state
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=device)
        return self.model.text_encoder(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_mask,
            output_attentions=True,
            return_dict=True,
        )

    def _itm_logits(self, fused: Any) -> torch.Tensor:
        return self.model.itm_head(fused.last_hidden_state[:, 0, :])

    def text_image_maps(self, pixel_values: torch.Tensor, text: TextBatch, method: MapMethod) -> torch.Tensor:
        """``[B, L, gh, gw]`` maps of layer ``method.layer``; padding rows are 0."""
        layer = self.check_method(method)
        if method.name == "gradcam":
            maps = self._gradcam(pixel_values, text, layer)
        else:
            with torch.no_grad():
                probs = self._fused(pixel_values, text.input_ids, text.attention_mask).cross_attentions[layer]
            maps = patch_maps(probs, self.grid_size, method.head_reduction)
        return mask_padding(maps, text.attention_mask)

    def _gradcam(self, pixel_values: torch.Tensor, text: TextBatch, layer: int) -> torch.Tensor:
        # clone(): tensors made under inference_mode cannot be saved for backward
        with gradients_enabled():
            fused = self._fused(pixel_values.clone(), text.input_ids.clone(), text.attention_mask.clone())
            probs = fused.cross_attentions[layer]
            match_logit = self._itm_logits(fused)[:, 1]
            (grad,) = torch.autograd.grad(match_logit.sum(), probs)
            cam = (grad * probs).clamp(min=0).detach()
        return patch_maps(cam, self.grid_size, "mean")

    @torch.no_grad()
    def match_scores(self, pixel_values: torch.Tensor, text: TextBatch) -> torch.Tensor:
        """ITM softmax probability of "match", ``[B]``."""
        return self._itm_logits(self._fused(pixel_values, text.input_ids, text.attention_mask)).float().softmax(dim=-1)[:, 1]

    @torch.no_grad()
    def embed_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """ITC image embeddings ``[B, D]`` (``vision_proj`` of the image [CLS])."""
        image_embeds = self.model.vision_model(pixel_values=pixel_values.to(self.device())).last_hidden_state
        return self.model.vision_proj(image_embeds[:, 0, :])

    @torch.no_grad()
    def embed_texts(self, text: TextBatch) -> torch.Tensor:
        """ITC text embeddings ``[B, D]`` (``text_proj`` of the unimodal text [CLS])."""
        device = self.device()
        hidden = self.model.text_encoder(
            input_ids=text.input_ids.to(device), attention_mask=text.attention_mask.to(device), return_dict=True
        ).last_hidden_state
        return self.model.text_proj(hidden[:, 0, :])


def build(
    config: Mapping[str, Any],
    *,
    checkpoint: str | Path | None = None,
    tokenizer: str | Path | None = None,
    image_size: int | None = None,
    seed: int = 0,
) -> BlipAdapter:
    """A BLIP adapter in eval mode.

    ``config``: ``{"pretrained": hub id, "revision": ...}`` or ``{"architecture": BlipConfig
    keyword arguments}`` (seeded random weights, no download); ``checkpoint`` (a
    save_pretrained folder or a file in one) replaces ``pretrained``.
    """
    source = pretrained_source(config, checkpoint)
    model, info = load_hf_model(BlipForImageTextRetrieval, BlipConfig, config, source, seed=seed)
    cfg = model.config
    tok, processor = load_text_and_processor(source, tokenizer, BlipImageProcessor, vocab_size=cfg.text_config.vocab_size, family="blip")
    size = check_image_size(image_size, cfg.vision_config.image_size, "blip")
    max_length = min(tok.model_max_length, cfg.text_config.max_position_embeddings)
    adapter = BlipAdapter(model, TextProcessor(tok, max_length), square_transform(processor, size), cfg.vision_config.patch_size, info)
    return adapter.eval()
