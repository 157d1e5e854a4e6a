"""The ALBEF-layout family (ALBEF, TCL) behind the :class:`~alignbench.models.base.AlignmentModel` contract.

Maps come from the text->image cross-attention of one fusion layer, ``MapMethod.layer`` indexing
the fusion layers (``-1``: the last, BERT layer 11 of the base model; ``2``: BERT layer 8), with
the image-CLS key column dropped (not renormalised) and heads reduced by ``head_reduction``:

* ``attention``: the attention probabilities;
* ``gradcam``: probabilities times the positive part of their gradient with respect to the ITM
  "match" logit (of every caption, summed over the batch: captions do not interact), as ALBEF
  visualises grounding. On the last fusion layer only the ``[CLS]`` row reaches the ITM head, so
  every other row is 0 there: local (phrase) maps need an earlier layer. Unless a run sets them,
  ``gradcam`` reads BERT layer :data:`GRADCAM_BERT_LAYER` (8: the third fusion layer of the base
  layout) with heads averaged, ALBEF's own setting (:data:`ALBEF_GRADCAM`): ``block_num = 8`` and
  ``gradcam[0].mean(0)`` over heads in ``visualization.ipynb`` of the salesforce/ALBEF repository.
  Models without that fusion layer before their last use the last fusion layer but one (see
  :func:`~alignbench.models.hf_common.gradcam_layer`).

Captions are tokenized as they are (ALBEF's ``pre_caption`` punctuation stripping is not applied,
so character offsets stay on the original caption); images are squashed to the input size
(bicubic, CLIP mean/std, as ALBEF's test transform). The match score is the ITM probability of
"match"; embeddings are ``vision_proj`` / ``text_proj`` of the ``[CLS]`` states (unnormalised).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from transformers import PreTrainedTokenizerFast

from ..base import MapMethod, TextBatch
from ..hf_common import HFAdapter, TextProcessor, gradcam_layer, gradients_enabled, mask_padding, patch_maps
from ..image import CLIP_MEAN, CLIP_STD, ImageTransform
from .config import AlbefConfig
from .modeling import AlbefModel, FusionOutput

# ALBEF's grounding visualisation: Grad-CAM on the cross-attention of BERT layer 8, heads averaged;
# as a MapMethod of the base layout (fusion layers from BERT layer 6 on).
GRADCAM_BERT_LAYER = 8
ALBEF_GRADCAM = MapMethod(name="gradcam", layer=GRADCAM_BERT_LAYER - AlbefConfig.fusion_layer, head_reduction="mean")


class AlbefAdapter(HFAdapter):
    """An ALBEF-layout model with its BERT WordPiece tokenizer (``[CLS] ... [SEP]``, ``[PAD]``)."""

    family: ClassVar[str] = "albef"
    capabilities: ClassVar[frozenset[str]] = frozenset({"maps", "match", "embed"})
    map_methods: ClassVar[tuple[str, ...]] = ("attention", "gradcam")

    def __init__(
        self,
        model: AlbefModel,
        tokenizer: PreTrainedTokenizerFast,
        provenance: dict[str, Any] | None = None,
        unavailable: frozenset[str] | set[str] = frozenset(),
        load_info: Mapping[str, Any] | None = None,
    ) -> None:
        """``unavailable`` removes capabilities whose head weights the checkpoint lacked."""
        cfg = model.config
        text = TextProcessor(tokenizer, max_length=cfg.max_position_embeddings)
        super().__init__(model, text, ImageTransform(cfg.image_size, CLIP_MEAN, CLIP_STD), cfg.patch_size, load_info)
        self.provenance = dict(provenance or {})
        self.capabilities = type(self).capabilities - frozenset(unavailable)

    @classmethod
    def architecture(cls, config: Mapping[str, Any]) -> AlbefModel:
        """The network of an :class:`AlbefConfig` dict (see :meth:`AlbefConfig.from_dict`)."""
        return AlbefModel(AlbefConfig.from_dict(config))

    @property
    def num_map_layers(self) -> int:
        """``MapMethod.layer`` indexes the fusion (cross-attention) layers."""
        return self.model.config.num_fusion_layers

    def default_map_method(self, name: str) -> MapMethod:
        """``gradcam``: ALBEF's layer and head averaging (see the module docstring); ``attention``: the reference."""
        if name == "gradcam":
            layer = gradcam_layer(GRADCAM_BERT_LAYER - self.model.config.fusion_layer, self.num_map_layers)
            return MapMethod(name, layer=layer, head_reduction="mean")
        return super().default_map_method(name)

    def _inputs(self, text: TextBatch) -> tuple[torch.Tensor, torch.Tensor]:
        return text.input_ids.to(self.device()), text.attention_mask.to(self.device())

    def _fuse(self, pixel_values: torch.Tensor, text: TextBatch) -> FusionOutput:
        ids, mask = self._inputs(text)
        image = self.model.encode_image(pixel_values.to(self.device()))
        return self.model.fuse(self.model.encode_text(ids, mask), mask, image)

    def text_image_maps(self, pixel_values: torch.Tensor, text: TextBatch, method: MapMethod) -> torch.Tensor:
        """``[B, L, g, g]`` cross-attention (or its Grad-CAM) of fusion layer ``method.layer``; padding rows are 0."""
        layer = self.check_method(method)
        if method.name == "attention":
            with torch.no_grad():
                attention = self._fuse(pixel_values, text).cross_attentions[layer]
        else:
            attention = self._gradcam(pixel_values, text, layer)
        return mask_padding(patch_maps(attention, self.grid_size, method.head_reduction), text.attention_mask)

    def _gradcam(self, pixel_values: torch.Tensor, text: TextBatch, layer: int) -> torch.Tensor:
        """``[B, heads, L, 1 + N]``: cross-attention times clamp(d ITM-match-logit / d attention, 0)."""
        ids, mask = self._inputs(text)
        with gradients_enabled():
            with torch.no_grad():
                image = self.model.encode_image(pixel_values.to(self.device()).clone())
                states = self.model.encode_text(ids.clone(), mask.clone())
            out = self.model.fuse(states, mask.clone(), image)
            attention = out.cross_attentions[layer]
            (grad,) = torch.autograd.grad(self.model.itm_logits(out.hidden_states)[:, 1].sum(), attention)
            return (attention * grad.clamp(min=0)).detach()

    @torch.no_grad()
    def match_scores(self, pixel_values: torch.Tensor, text: TextBatch) -> torch.Tensor:
        """ITM probability of "match", ``[B]``."""
        self.require("match")
        return self.model.itm_logits(self._fuse(pixel_values, text).hidden_states).softmax(dim=-1)[:, 1]

    @torch.no_grad()
    def embed_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``vision_proj`` of the image class token, ``[B, D]``."""
        self.require("embed")
        return self.model.vision_proj(self.model.encode_image(pixel_values.to(self.device()))[:, 0])

    @torch.no_grad()
    def embed_texts(self, text: TextBatch) -> torch.Tensor:
        """``text_proj`` of the text-only ``[CLS]`` state, ``[B, D]``."""
        self.require("embed")
        return self.model.text_proj(self.model.encode_text(*self._inputs(text))[:, 0])
