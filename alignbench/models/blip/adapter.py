"""BLIP ITM models behind the :class:`~alignbench.models.base.AlignmentModel` contract.

Maps come from the cross-attention of the image-grounded text encoder (every text layer
cross-attends to the ViT output ``[CLS] + patches``). The ITM path feeds the tokenizer's ids
as they are (``[CLS]`` first), as transformers' ``BlipForImageTextRetrieval`` does; the
original BLIP code replaces the first id by ``[ENC]`` for ITM, which the transformers port does
not.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from transformers import BlipConfig, BlipForImageTextRetrieval, BlipImageProcessor

from ..base import MapMethod, TextBatch
from ..hf_common import HFModelAdapter, gradcam_layer, gradients_enabled, mask_padding, patch_maps


# LAVIS' compute_gradcam(block_num=6): the text-encoder layer whose cross-attention BLIP's Grad-CAM reads.
GRADCAM_LAYER = 6


class BlipAdapter(HFModelAdapter):
    """A BLIP ITM model with its BERT tokenizer and image processor.

    Map methods: ``attention`` (text->image cross-attention probabilities of one text layer,
    image [CLS] column dropped, not renormalised, heads reduced by max or mean) and
    ``gradcam`` (gradient of the ITM "match" logit w.r.t. those probabilities times the
    probabilities, clamped at 0, heads reduced by ``head_reduction``, as BLIP and ALBEF
    visualise grounding). Match: ITM softmax probability of "match". Embed: the ITC
    projections of the image and text [CLS] (unnormalised).

    Unless a run sets them, ``gradcam`` reads text layer :data:`GRADCAM_LAYER` (6 of 12) with
    heads averaged: the defaults of ``compute_gradcam`` (``block_num=6``, ``gradcam.mean(0)``
    over heads) in ``lavis/models/blip_models/blip_image_text_matching.py`` of Salesforce's LAVIS,
    which draws BLIP's grounding maps; on shallower models, the last layer but one (see
    :func:`~alignbench.models.hf_common.gradcam_layer`).
    """

    family: ClassVar[str] = "blip"
    capabilities: ClassVar[frozenset[str]] = frozenset({"maps", "match", "embed"})
    map_methods: ClassVar[tuple[str, ...]] = ("attention", "gradcam")
    hf_model = BlipForImageTextRetrieval
    hf_config = BlipConfig
    hf_processor = BlipImageProcessor
    model: BlipForImageTextRetrieval

    @property
    def num_map_layers(self) -> int:
        return self.model.config.text_config.num_hidden_layers

    def default_map_method(self, name: str) -> MapMethod:
        """``gradcam``: LAVIS' layer and head averaging (see the class docstring); ``attention``: the reference."""
        if name == "gradcam":
            return MapMethod(name, layer=gradcam_layer(GRADCAM_LAYER, self.num_map_layers), head_reduction="mean")
        return super().default_map_method(name)

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
            attention = self._gradcam(pixel_values, text, layer)
        else:
            with torch.no_grad():
                attention = self._fused(pixel_values, text.input_ids, text.attention_mask).cross_attentions[layer]
        return mask_padding(patch_maps(attention, self.grid_size, method.head_reduction), text.attention_mask)

    def _gradcam(self, pixel_values: torch.Tensor, text: TextBatch, layer: int) -> torch.Tensor:
        """``[B, heads, L, 1 + N]``: cross-attention times its gradient, clamped at 0."""
        # clone(): tensors made under inference_mode cannot be saved for backward
        with gradients_enabled():
            fused = self._fused(pixel_values.clone(), text.input_ids.clone(), text.attention_mask.clone())
            probs = fused.cross_attentions[layer]
            match_logit = self._itm_logits(fused)[:, 1]
            (grad,) = torch.autograd.grad(match_logit.sum(), probs)
            return (grad * probs).clamp(min=0).detach()

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


build = BlipAdapter.build  # the family builder alignbench.models.factory calls
