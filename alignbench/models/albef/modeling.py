"""The ALBEF-layout network: timm ViT + transformers BERT with cross-attention in the fusion layers.

Parameter names follow the ALBEF repository after :func:`~.checkpoint.normalise_keys`
(``visual_encoder.*`` as timm's ViT, ``text_encoder.{embeddings,encoder}.*`` as transformers'
``BertModel``, ``crossattention`` only in layers ``>= fusion_layer``, ``vision_proj``,
``text_proj``, ``itm_head``). transformers builds cross-attention into every layer or none, so the
fusion layers are replaced by cross-attending ``BertLayer`` s and the encoder is run layer by
layer: the text layers alone (ALBEF's ``mode='text'``), then the fusion layers with the image
tokens (``mode='fusion'``). Attention is eager, so probabilities are returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from transformers import BertConfig, BertModel
from transformers.models.bert.modeling_bert import BertLayer

from .config import AlbefConfig


@dataclass
class FusionOutput:
    """Fused text states ``[B, L, H]`` and each fusion layer's cross-attention ``[B, heads, L, 1 + N]``."""

    hidden_states: torch.Tensor
    cross_attentions: list[torch.Tensor]


class AlbefModel(nn.Module):
    """Image encoder, text/fusion encoder and the ITM / contrastive heads of an ALBEF-layout model."""

    def __init__(self, config: AlbefConfig) -> None:
        super().__init__()
        self.config = config
        self.visual_encoder = VisionTransformer(
            img_size=config.image_size,
            patch_size=config.patch_size,
            embed_dim=config.vision_width,
            depth=config.vision_depth,
            num_heads=config.vision_heads,
            mlp_ratio=4,
            qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            num_classes=0,
            global_pool="",
        )
        bert = BertConfig(
            vocab_size=config.vocab_size,
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            intermediate_size=config.intermediate_size,
            max_position_embeddings=config.max_position_embeddings,
            pad_token_id=config.pad_token_id,
            attn_implementation="eager",
        )
        self.text_encoder = BertModel(bert, add_pooling_layer=False)
        fusion = BertConfig(**{**bert.to_dict(), "is_decoder": True, "add_cross_attention": True}, attn_implementation="eager")
        layers = self.text_encoder.encoder.layer
        for i in range(config.fusion_layer, config.num_layers):
            layers[i] = BertLayer(fusion, layer_idx=i)
            layers[i].apply(self.text_encoder._init_weights)  # BERT's initialisation, as the other layers
        self.vision_proj = nn.Linear(config.vision_width, config.embed_dim)
        self.text_proj = nn.Linear(config.hidden_size, config.embed_dim)
        self.itm_head = nn.Linear(config.hidden_size, 2)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Image tokens ``[B, 1 + N, D]`` (class token first, patches row-major), after the final norm."""
        return self.visual_encoder.forward_features(pixel_values)

    @staticmethod
    def _mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Text-only states ``[B, L, H]`` after the layers before ``fusion_layer``."""
        h = self.text_encoder.embeddings(input_ids=input_ids)
        mask = self._mask(attention_mask, h.dtype)
        for layer in self.text_encoder.encoder.layer[: self.config.fusion_layer]:
            h = layer(h, attention_mask=mask)[0]
        return h

    def fuse(self, text_states: torch.Tensor, attention_mask: torch.Tensor, image_tokens: torch.Tensor) -> FusionOutput:
        """Run the fusion layers over ``text_states`` with cross-attention to ``image_tokens``."""
        mask = self._mask(attention_mask, text_states.dtype)
        h, cross = text_states, []
        for layer in self.text_encoder.encoder.layer[self.config.fusion_layer :]:
            out = layer(h, attention_mask=mask, encoder_hidden_states=image_tokens, output_attentions=True)
            h = out[0]
            cross.append(out[2])
        return FusionOutput(h, cross)

    def itm_logits(self, fused: torch.Tensor) -> torch.Tensor:
        """ITM logits ``[B, 2]`` (no match, match) from the fused ``[CLS]`` state."""
        return self.itm_head(fused[:, 0])
