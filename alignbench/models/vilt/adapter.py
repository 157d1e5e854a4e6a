"""ViLT models behind the :class:`~alignbench.models.base.AlignmentModel` contract.

ViLT runs one transformer over ``text tokens, image [CLS], patches``. Its embedding
(``ViltEmbeddings.visual_embed``) puts the patches in a random order and, when an image has
more than ``max_image_length`` patches, keeps a random subset; it returns the ``(row, col)``
of every kept patch (``patch_index``). The adapter runs ``visual_embed`` itself, keeps that
index, feeds the embedded image through ``image_embeds`` and scatters every attention column
back to its grid cell; patches that were left out get 0. The order is drawn from a fixed seed
in a forked RNG, so maps are reproducible and the caller's RNG is untouched.

Images are squashed to a fixed square (384 x 384 for the released models, a 12 x 12 grid),
not resized on the shorter side as ``ViltImageProcessor`` does, so every image has the same
grid.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from transformers import PretrainedConfig, ViltConfig, ViltForImageAndTextRetrieval, ViltImageProcessor

from ..base import MapMethod, TextBatch
from ..hf_common import HFModelAdapter, mask_padding, reduce_heads

PATCH_ORDER_SEED = 0


def scatter_to_grid(values: torch.Tensor, patch_index: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``values [B, L, N]`` of ``N`` patches at ``patch_index [B, N, 2]`` (row, col) -> ``[B, L, gh, gw]``
    with every value in its cell (row-major) and 0 in cells of no patch."""
    gh, gw = grid
    batch, rows, n = values.shape
    flat = (patch_index[..., 0] * gw + patch_index[..., 1]).to(values.device)
    out = values.new_zeros(batch, rows, gh * gw)
    out.scatter_(2, flat[:, None, :].expand(batch, rows, n), values)
    return out.reshape(batch, rows, gh, gw)


class ViltAdapter(HFModelAdapter):
    """A ViLT retrieval model with its BERT tokenizer.

    Map method ``attention``: the self-attention probabilities of one layer from each text
    token to the image patches (image [CLS] and text keys dropped, not renormalised), heads
    reduced by max or mean, each column put back on its patch's cell. Match: the retrieval
    head's score (``rank_output``, a logit). ViLT has no separate image/text embeddings.
    """

    family: ClassVar[str] = "vilt"
    capabilities: ClassVar[frozenset[str]] = frozenset({"maps", "match"})
    map_methods: ClassVar[tuple[str, ...]] = ("attention",)
    hf_model = ViltForImageAndTextRetrieval
    hf_config = ViltConfig
    hf_processor = ViltImageProcessor
    model: ViltForImageAndTextRetrieval

    @staticmethod
    def text_config(config: PretrainedConfig) -> PretrainedConfig:
        """ViLT's config is flat: text and image settings in one."""
        return config

    @staticmethod
    def vision_config(config: PretrainedConfig) -> PretrainedConfig:
        return config

    @property
    def num_map_layers(self) -> int:
        return self.model.config.num_hidden_layers

    def embed_image(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``visual_embed`` with a fixed patch order: ``(image_embeds [B, 1+N, D], image_mask
        [B, 1+N], patch_index [B, N, 2])``."""
        px = pixel_values.to(self.device())
        pixel_mask = torch.ones(px.shape[0], *px.shape[2:], dtype=torch.long, device=px.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(PATCH_ORDER_SEED)
            embeds, mask, (patch_index, _) = self.model.vilt.embeddings.visual_embed(
                px, pixel_mask, max_image_length=self.model.config.max_image_length
            )
        return embeds, mask, patch_index

    def _forward(self, pixel_values: torch.Tensor, text: TextBatch, output_attentions: bool) -> tuple[Any, torch.Tensor]:
        embeds, mask, patch_index = self.embed_image(pixel_values)
        device = embeds.device
        out = self.model(
            input_ids=text.input_ids.to(device),
            attention_mask=text.attention_mask.to(device),
            image_embeds=embeds,
            pixel_mask=mask,
            output_attentions=output_attentions,
            return_dict=True,
        )
        return out, patch_index

    @torch.no_grad()
    def text_image_maps(self, pixel_values: torch.Tensor, text: TextBatch, method: MapMethod) -> torch.Tensor:
        """``[B, L, gh, gw]`` text->patch attention of layer ``method.layer``; padding rows are 0."""
        layer = self.check_method(method)
        out, patch_index = self._forward(pixel_values, text, output_attentions=True)
        n_text = text.input_ids.shape[1]
        to_patches = out.attentions[layer][:, :, :n_text, n_text + 1 :]  # skip text keys and image [CLS]
        maps = scatter_to_grid(reduce_heads(to_patches, method.head_reduction), patch_index, self.grid_size)
        return mask_padding(maps, text.attention_mask)

    @torch.no_grad()
    def match_scores(self, pixel_values: torch.Tensor, text: TextBatch) -> torch.Tensor:
        """Retrieval score (``rank_output`` logit), ``[B]``."""
        return self._forward(pixel_values, text, output_attentions=False)[0].logits[:, 0]


build = ViltAdapter.build  # the family builder alignbench.models.factory calls
