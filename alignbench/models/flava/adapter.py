"""FLAVA models behind the :class:`~alignbench.models.base.AlignmentModel` contract.

``FlavaModel.forward`` does not pass ``output_attentions`` to its multimodal encoder, so the
adapter runs the steps itself: unimodal image and text encoders, their last hidden states
projected to the multimodal width, concatenated as ``[image [CLS], patches, text]`` and fed to
``multimodal_model`` (which prepends its own [CLS]) with ``output_attentions=True``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from transformers import FlavaConfig, FlavaForPreTraining, FlavaImageProcessor, PretrainedConfig

from ..base import MapMethod, TextBatch
from ..hf_common import HFModelAdapter, mask_padding, patch_maps


class FlavaAdapter(HFModelAdapter):
    """A FLAVA model with its BERT tokenizer and image processor.

    Map method ``attention``: the multimodal encoder's self-attention probabilities of one
    layer from each text token to the image patches (image [CLS], multimodal [CLS] and text
    keys dropped, not renormalised), heads reduced by max or mean. Match: ITM softmax
    probability of "match" (declared only when the checkpoint has ITM head weights: a bare
    ``FlavaModel`` gives a model without ``match``). Embed: the unimodal contrastive projections
    of the image and text [CLS] (unnormalised). The image codebook, used only for pre-training,
    is not built.
    """

    family: ClassVar[str] = "flava"
    capabilities: ClassVar[frozenset[str]] = frozenset({"maps", "match", "embed"})
    map_methods: ClassVar[tuple[str, ...]] = ("attention",)
    hf_model = FlavaForPreTraining
    hf_config = FlavaConfig
    hf_processor = FlavaImageProcessor
    hf_overrides = {"init_codebook": False}  # the image codebook is used only for pre-training
    model: FlavaForPreTraining

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if any(k.startswith("itm_head.") for k in self.load_info.get("missing_keys", [])):
            self.capabilities = type(self).capabilities - {"match"}

    @staticmethod
    def vision_config(config: PretrainedConfig) -> PretrainedConfig:
        return config.image_config

    @property
    def num_map_layers(self) -> int:
        return self.model.config.multimodal_config.num_hidden_layers

    def _multimodal(self, pixel_values: torch.Tensor, text: TextBatch, output_attentions: bool) -> tuple[Any, int]:
        """Multimodal encoder output and the sequence position of the image [CLS]."""
        flava = self.model.flava
        device = self.device()
        ids, mask = text.input_ids.to(device), text.attention_mask.to(device)
        # the last hidden states before the final layer norm, as FlavaModel.forward projects them
        image_states = flava.image_model(pixel_values=pixel_values.to(device), output_hidden_states=True).hidden_states[-1]
        text_states = flava.text_model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        fused_in = torch.cat([flava.image_to_mm_projection(image_states), flava.text_to_mm_projection(text_states)], dim=1)
        image_start = int(flava.multimodal_model.use_cls_token)
        image_mask = torch.ones(ids.shape[0], image_start + image_states.shape[1], dtype=mask.dtype, device=device)
        out = flava.multimodal_model(
            fused_in, attention_mask=torch.cat([image_mask, mask], dim=1), output_attentions=output_attentions, return_dict=True
        )
        return out, image_start

    @torch.no_grad()
    def text_image_maps(self, pixel_values: torch.Tensor, text: TextBatch, method: MapMethod) -> torch.Tensor:
        """``[B, L, gh, gw]`` text->patch attention of multimodal layer ``method.layer``; padding rows are 0."""
        layer = self.check_method(method)
        out, image_start = self._multimodal(pixel_values, text, output_attentions=True)
        n_image = 1 + self.grid_size[0] * self.grid_size[1]
        text_start = image_start + n_image
        attn = out.attentions[layer][:, :, text_start:, image_start:text_start]
        return mask_padding(patch_maps(attn, self.grid_size, method.head_reduction), text.attention_mask)

    @torch.no_grad()
    def match_scores(self, pixel_values: torch.Tensor, text: TextBatch) -> torch.Tensor:
        """ITM softmax probability of "match", ``[B]``."""
        self.require("match")
        out, _ = self._multimodal(pixel_values, text, output_attentions=False)
        return self.model.itm_head(out.last_hidden_state).float().softmax(dim=-1)[:, 1]

    @torch.no_grad()
    def embed_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Contrastive image embeddings ``[B, D]``: ``image_projection`` of the image [CLS] (unnormalised),
        as FLAVA's contrastive head uses them."""
        flava = self.model.flava
        hidden = flava.image_model(pixel_values=pixel_values.to(self.device()), return_dict=True).last_hidden_state
        return flava.image_projection(hidden[:, 0, :])

    @torch.no_grad()
    def embed_texts(self, text: TextBatch) -> torch.Tensor:
        """Contrastive text embeddings ``[B, D]``: ``text_projection`` of the text [CLS] (unnormalised)."""
        flava, device = self.model.flava, self.device()
        hidden = flava.text_model(
            input_ids=text.input_ids.to(device), attention_mask=text.attention_mask.to(device), return_dict=True
        ).last_hidden_state
        return flava.text_projection(hidden[:, 0, :])


build = FlavaAdapter.build  # the family builder alignbench.models.factory calls
