"""The METER / SCL / GLSCL family behind the :class:`~alignbench.models.base.AlignmentModel` contract."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from transformers import PreTrainedTokenizerFast

from ..base import AlignmentModel, CapabilityError, MapMethod, TextBatch
from ..hf_common import TextProcessor
from ..image import CLIP_MEAN, CLIP_STD, ImageTransform
from .config import MeterConfig
from .modeling import MeterModel, frame_count

HEAD_REDUCTIONS = ("max", "mean")


class MeterAdapter(AlignmentModel):
    """A METER-layout model with its RoBERTa tokenizer and CLIP preprocessing.

    Maps (method ``"attention"``) are the text->image cross-attention probabilities of one
    text-side co-attention layer with the image-CLS key column dropped (not renormalised),
    heads reduced by max or mean: the ALIGN-BENCH reference map with the defaults (last layer,
    max). The match score is the ITM logit of "match" minus that of "no match"; embeddings are
    the contrastive projections (unnormalised). Clips ``[B, T, 3, H, W]`` run in the flexible
    video mode (see :mod:`.modeling`); their maps are ``[B, L, T, g, g]``, every text position's
    attention over each frame's patches (the frames' [CLS] key columns dropped).
    """

    family: ClassVar[str] = "meter"
    capabilities: ClassVar[frozenset[str]] = frozenset({"maps", "match", "embed", "video"})
    map_methods: ClassVar[tuple[str, ...]] = ("attention",)

    @classmethod
    def architecture(cls, config: Mapping[str, Any]) -> MeterModel:
        """The network of a reference-style config (see :meth:`MeterConfig.from_reference`)."""
        return MeterModel(MeterConfig.from_reference(config))

    def __init__(
        self,
        model: MeterModel,
        tokenizer: PreTrainedTokenizerFast,
        image_size: int,
        provenance: dict[str, Any] | None = None,
        unavailable: frozenset[str] | set[str] = frozenset(),
        load_info: dict[str, Any] | None = None,
        temporal_embedding: str = "zero-init",
    ) -> None:
        """``unavailable`` removes capabilities whose head weights the checkpoint lacked;
        ``load_info`` (how the weights were loaded) and ``temporal_embedding`` (whether the video
        mode's temporal embedding was loaded or is zero) are reported by :meth:`describe`."""
        super().__init__()
        if image_size != model.config.image_size:
            raise ValueError(f"image_size {image_size} differs from the model's {model.config.image_size}")
        self.model = model
        self.tokenizer = tokenizer
        self._image_size = image_size
        self.provenance = dict(provenance or {})
        self.load_info = dict(load_info or {})
        self.temporal_embedding = temporal_embedding
        self.capabilities = type(self).capabilities - frozenset(unavailable)
        cfg = model.config
        # Room in RoBERTa's position table (positions start after the pad id); METER trained
        # with max_text_len ids including <s> and </s>.
        self.max_length = min(cfg.max_text_len, cfg.text_max_position_embeddings - cfg.text_pad_token_id - 1)
        self.text = TextProcessor(tokenizer, self.max_length)

    @property
    def image_size(self) -> int:
        return self._image_size

    @property
    def grid_size(self) -> tuple[int, int]:
        g = self._image_size // self.model.config.patch_size
        return g, g

    def image_transform(self) -> ImageTransform:
        return ImageTransform(self._image_size, CLIP_MEAN, CLIP_STD)

    def tokenize(self, texts: list[str]) -> TextBatch:
        """``<s> ... </s>``, padded to the longest caption with the pad id.

        Captions longer than ``max_length`` ids are truncated (the reference scripts never
        truncate); ``extra["truncated"]`` flags them.
        """
        return self.text(texts)

    def text_processor(self) -> TextProcessor:
        """The picklable tokenizer callable, without the model (for DataLoader workers)."""
        return self.text

    def _inputs(
        self, pixel_values: torch.Tensor | None, text: TextBatch | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        device = next(self.model.parameters()).device
        px = pixel_values.to(device) if pixel_values is not None else None
        if text is None:
            return px, None, None
        return px, text.input_ids.to(device), text.attention_mask.to(device)

    def _require(self, capability: str) -> None:
        if capability not in self.capabilities:
            raise CapabilityError(f"this {self.family} checkpoint has no weights for {capability!r}")

    @torch.no_grad()
    def text_image_maps(self, pixel_values: torch.Tensor, text: TextBatch, method: MapMethod) -> torch.Tensor:
        """``[B, L, g, g]`` text->image attention of layer ``method.layer`` (``[B, L, T, g, g]``
        for clips); padding rows are 0."""
        if method.name not in self.map_methods:
            raise CapabilityError(f"{self.family} models have no map method {method.name!r}; use one of {self.map_methods}")
        if method.head_reduction not in HEAD_REDUCTIONS:
            raise ValueError(f"head_reduction must be one of {HEAD_REDUCTIONS}, not {method.head_reduction!r}")
        n_layers = self.model.config.num_top_layer
        if not -n_layers <= method.layer < n_layers:
            raise ValueError(f"layer {method.layer} out of range for {n_layers} co-attention layers")
        px, ids, mask = self._inputs(pixel_values, text)
        probs = self.model.infer(px, ids, mask, output_cross_attentions=True).cross_attentions[method.layer]
        frames = frame_count(px)
        patches = probs[..., frames:]  # drop the image-CLS key(s), no renormalisation
        reduced = patches.amax(dim=1) if method.head_reduction == "max" else patches.mean(dim=1)
        maps = reduced.reshape(*reduced.shape[:2], *((frames,) if px.dim() == 5 else ()), *self.grid_size)
        return maps * mask.reshape(*mask.shape, *[1] * (maps.dim() - 2)).to(maps.dtype)

    @torch.no_grad()
    def match_scores(self, pixel_values: torch.Tensor, text: TextBatch) -> torch.Tensor:
        """ITM logit("match") - logit("no match"), ``[B]``."""
        self._require("match")
        logits = self.model.itm_logits(*self._inputs(pixel_values, text))
        return logits[:, 1] - logits[:, 0]

    @torch.no_grad()
    def embed_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Contrastive image embeddings ``[B, D]`` (``vision_proj``)."""
        self._require("embed")
        return self.model.con_image_proj(self._inputs(pixel_values, None)[0])

    @torch.no_grad()
    def embed_texts(self, text: TextBatch) -> torch.Tensor:
        """Contrastive text embeddings ``[B, D]`` (``language_proj``)."""
        self._require("embed")
        _, ids, mask = self._inputs(None, text)
        return self.model.con_text_proj(ids, mask)

    def describe(self) -> dict:
        """Provenance (name, checkpoint, sha256, ...), family, parameters, load info, config and
        the state of the video mode's temporal embedding."""
        return {
            **super().describe(),
            "load": self.load_info,
            "temporal_embedding": self.temporal_embedding,
            "image_size": self._image_size,
            "capabilities": sorted(self.capabilities),
            "config": self.model.config.to_dict(),
        }
