"""The open_clip dual-encoder family behind the :class:`~alignbench.models.base.AlignmentModel` contract.

A dual encoder has no text->image attention, so its maps compare the caption (or a piece of
it) with the image patches:

* ``patch-similarity`` (default): the visual patch tokens, after ``ln_post`` and projected with
  ``visual.proj`` into the joint space, are compared by cosine with a text embedding; a row is
  ``softmax_patches(logit_scale * cos)``, a distribution over the patches like a fusion model's
  attention row (non-negative, so relevance-mass scores are defined).
* ``relevancy``: Chefer et al. (2021) gradient relevancy of the image-text cosine through the
  visual attention layers (:mod:`.relevancy`).

Which text is compared: row 0 (``<start_of_text>``, the batch's ``global_index``) holds the map
of the whole caption, encoded as usual (its embedding is read at ``<end_of_text>``, whose position
varies, hence row 0 carries it). Every other caption token's row holds the map of the tokenizer
unit (word, digit, punctuation run; see :mod:`.tokenization`) the token belongs to, encoded on its
own as ``<start_of_text> unit <end_of_text>``. A phrase map (:meth:`ClipAdapter.phrase_image_maps`,
``standalone_phrase_maps``) is the map of the phrase encoded on its own as a caption,
``<start_of_text> phrase <end_of_text>``, against its sample's image: exactly the global row of a
batch whose caption is the phrase. The local-local probe uses it instead of summing the phrase's
token rows (which would score "the small red circle" as the sum of four one-word maps). Maps
ignore ``MapMethod.layer`` and ``head_reduction``. The match score is the cosine similarity of the
global embeddings.

Clips ``[B, T, 3, H, W]`` (capability ``video``): every frame is encoded as an image; a clip's
embedding is the mean of its frames' L2-normalised embeddings (``frame_pooling: mean``, as
CLIP4Clip's mean pooling), and its maps are the per-frame maps ``[B, L, T, gh, gw]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import CLIP

from ..base import AlignmentModel, CapabilityError, MapMethod, TextBatch
from ..image import ImageTransform
from ..hf_common import gradients_enabled
from .relevancy import recording_attention, relevancy_step
from .tokenization import ClipTextProcessor


class ClipAdapter(AlignmentModel):
    """An open_clip :class:`~open_clip.model.CLIP` with its BPE tokenizer (see the module docstring)."""

    family: ClassVar[str] = "clip"
    capabilities: ClassVar[frozenset[str]] = frozenset({"maps", "match", "embed", "video"})
    map_methods: ClassVar[tuple[str, ...]] = ("patch-similarity", "relevancy")
    standalone_phrase_maps: ClassVar[bool] = True
    frame_pooling: ClassVar[str] = "mean"

    @classmethod
    def architecture(cls, config: Mapping[str, Any]) -> CLIP | None:
        """The network of a ``model_cfg`` config or of a named open_clip model; ``None`` for a
        name open_clip ships no config for (e.g. ``hf-hub:``) or one with a custom or Hugging Face
        text tower (not a plain :class:`CLIP`; the latter's config is a download)."""
        if "model_cfg" in config:
            cfg = config["model_cfg"]
        elif config.get("model") in open_clip.list_models():  # configs open_clip ships (no lookup on the hub)
            cfg = open_clip.get_model_config(config["model"])
        else:
            return None
        if cfg.get("custom_text") or "hf_model_name" in cfg.get("text_cfg", {}):
            return None
        return CLIP(**cfg)

    def __init__(
        self,
        model: CLIP,
        text_processor: ClipTextProcessor,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        provenance: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        visual = getattr(model, "visual", None)
        if not isinstance(model, CLIP) or getattr(visual, "pool_type", None) != "tok" or getattr(visual, "attn_pool", True) is not None:
            raise ValueError(
                f"the clip family supports open_clip CLIP models with a class-token ViT image tower, not {type(model).__name__} "
                f"with {type(visual).__name__}"
            )
        h, w = visual.image_size
        if h != w:
            raise ValueError(f"the clip family needs a square image input, got {h}x{w}")
        visual.output_tokens = True
        self.model = model
        self._text = text_processor
        self.mean, self.std = tuple(mean), tuple(std)
        self.provenance = dict(provenance or {})

    @property
    def image_size(self) -> int:
        return self.model.visual.image_size[0]

    @property
    def grid_size(self) -> tuple[int, int]:
        return tuple(self.model.visual.grid_size)

    def image_transform(self) -> ImageTransform:
        """Squash resize to the model input (no centre crop: maps cover the whole image, as the
        region masks do), then normalise with the model's mean/std."""
        return ImageTransform(self.image_size, self.mean, self.std)

    def tokenize(self, texts: list[str]) -> TextBatch:
        return self._text(texts)

    def text_processor(self) -> ClipTextProcessor:
        return self._text

    @property
    def _device(self) -> torch.device:
        return self.model.logit_scale.device

    def _encode_ids(self, rows: list[list[int]]) -> torch.Tensor:
        """Text embeddings ``[N, E]`` of id sequences (``<start_of_text> ... <end_of_text>``)."""
        ids = torch.zeros(len(rows), self._text.context_length, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        return self.model.encode_text(ids.to(self._device))

    @staticmethod
    def _captions(text: TextBatch) -> list[list[int]]:
        """The id sequence of every caption of ``text``, padding dropped."""
        ids = text.input_ids.cpu()
        return [ids[b, :n].tolist() for b, n in enumerate(text.attention_mask.sum(dim=1).tolist())]

    def _queries(self, text: TextBatch) -> tuple[list[list[int]], torch.Tensor]:
        """The texts the rows compare with, and per row ``[B, L]`` the index of its text (-1: zero row).

        Texts ``0..B-1`` are the captions (rows at ``global_index``); then every distinct unit."""
        ids, special, span = text.input_ids.cpu(), text.special.cpu(), text.extra["unit_span"].cpu()
        texts = self._captions(text)
        rows = torch.full(ids.shape, -1, dtype=torch.long)
        rows[:, text.global_index] = torch.arange(len(texts))
        sot, eot = self._text.tokenizer.sot_token_id, self._text.tokenizer.eot_token_id
        units: dict[tuple[int, ...], int] = {}
        for b, t in (~special).nonzero().tolist():
            s, e = span[b, t].tolist()
            unit = tuple(ids[b, s:e].tolist())
            if unit not in units:
                units[unit] = len(texts)
                texts.append([sot, *unit, eot])
            rows[b, t] = units[unit]
        return texts, rows

    def _check(self, method: MapMethod) -> None:
        if method.name not in self.map_methods:
            raise CapabilityError(f"{self.family} models have no map method {method.name!r}; use one of {self.map_methods}")

    def text_image_maps(self, pixel_values: torch.Tensor, text: TextBatch, method: MapMethod) -> torch.Tensor:
        """``[B, L, gh, gw]`` (``[B, L, T, gh, gw]`` for clips): row ``global_index`` the whole
        caption, other rows their unit; specials and padding 0."""
        self._check(method)
        return self._maps(pixel_values, *self._queries(text), method)

    def phrase_image_maps(self, pixel_values: torch.Tensor, sample_index: torch.Tensor, phrases: list[str], method: MapMethod) -> torch.Tensor:
        """``[P, gh, gw]`` (``[P, T, gh, gw]`` for clips): each phrase tokenized as a caption
        and compared with image ``sample_index[p]``, as row ``global_index`` of its own caption."""
        self._check(method)
        index, P = sample_index.cpu(), len(phrases)
        if index.shape != (P,):
            raise ValueError(f"phrase_image_maps needs one sample index per phrase, got {tuple(index.shape)} for {P} phrases")
        captions = [tuple(ids) for ids in self._captions(self.tokenize(phrases))]
        texts = list(dict.fromkeys(captions))  # each distinct phrase encoded once
        which = {t: k for k, t in enumerate(texts)}
        rows = torch.full((pixel_values.shape[0], P), -1, dtype=torch.long)  # image b, row p: phrase p if it is b's
        rows[index, torch.arange(P)] = torch.tensor([which[t] for t in captions], dtype=torch.long)
        maps = self._maps(pixel_values, [list(t) for t in texts], rows, method)
        return maps[index.to(maps.device), torch.arange(P, device=maps.device)]

    def _maps(self, pixel_values: torch.Tensor, texts: list[list[int]], rows: torch.Tensor, method: MapMethod) -> torch.Tensor:
        """``[B, R, gh, gw]`` (``[B, R, T, gh, gw]`` for clips): row ``r`` of image ``b`` the map
        of ``texts[rows[b, r]]``, 0 where ``rows[b, r]`` is -1."""
        rows = rows.to(self._device)
        px = pixel_values.to(self._device)
        clips = px.shape[:2] if px.dim() == 5 else None
        if clips is not None:  # frames as images, each with its clip's text rows
            px, rows = px.flatten(0, 1), rows.repeat_interleave(clips[1], dim=0)
        if method.name == "patch-similarity":
            per_text = self._patch_similarity(px, texts)
        else:
            per_text = self._relevancy(px, texts, rows)
        B, R = rows.shape
        maps = per_text.gather(1, rows.clamp(min=0)[..., None].expand(B, R, per_text.shape[-1]))
        maps = maps * (rows >= 0)[..., None].to(maps.dtype)
        maps = maps.reshape(B, R, *self.grid_size)
        return maps if clips is None else maps.unflatten(0, clips).transpose(1, 2)

    @torch.no_grad()
    def _patch_similarity(self, px: torch.Tensor, texts: list[list[int]]) -> torch.Tensor:
        """``[B, T, N]`` softmax over patches of the scaled cosine of every patch with every text."""
        _, tokens = self.model.visual(px)
        patches = F.normalize(tokens @ self.model.visual.proj, dim=-1)
        queries = F.normalize(self._encode_ids(texts), dim=-1)
        sim = torch.einsum("bne,te->btn", patches, queries)
        return (self.model.logit_scale.exp() * sim).softmax(dim=-1)

    def _relevancy(self, px: torch.Tensor, texts: list[list[int]], rows: torch.Tensor) -> torch.Tensor:
        """``[B, T, N]`` relevancy of each image for the texts its rows use (0 for the others).

        One backward pass per step explains one text per image at once (images do not interact)."""
        needed = [sorted(set(r[r >= 0].tolist())) for r in rows.cpu()]
        with gradients_enabled():
            with torch.no_grad():
                queries = F.normalize(self._encode_ids(texts), dim=-1)
            with recording_attention(list(self.model.visual.transformer.resblocks)) as probs:
                images = F.normalize(self.model.visual(px.clone())[0], dim=-1)
            out = torch.zeros(len(needed), len(texts), probs[0].shape[-1] - 1, device=px.device)
            for k in range(max(map(len, needed))):
                bs = torch.tensor([b for b, q in enumerate(needed) if k < len(q)], device=px.device)
                qs = torch.tensor([q[k] for q in needed if k < len(q)], device=px.device)
                score = (images[bs] * queries[qs]).sum()
                out[bs, qs] = relevancy_step(score, probs)[bs]
        return out

    @torch.no_grad()
    def match_scores(self, pixel_values: torch.Tensor, text: TextBatch) -> torch.Tensor:
        """Cosine similarity of the image and caption embeddings, ``[B]``."""
        image = F.normalize(self.embed_images(pixel_values), dim=-1)
        return (image * F.normalize(self.embed_texts(text), dim=-1)).sum(dim=-1)

    @torch.no_grad()
    def embed_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Projected image embeddings ``[B, E]`` (unnormalised); for clips, the mean of the
        frames' normalised embeddings."""
        px = pixel_values.to(self._device)
        if px.dim() == 4:
            return self.model.visual(px)[0]
        frames = F.normalize(self.model.visual(px.flatten(0, 1))[0], dim=-1)
        return frames.unflatten(0, px.shape[:2]).mean(dim=1)

    @torch.no_grad()
    def embed_texts(self, text: TextBatch) -> torch.Tensor:
        """Projected caption embeddings ``[B, E]`` (unnormalised)."""
        return self._encode_ids(self._captions(text))

    def describe(self) -> dict:
        """Provenance, family, parameters, image size, capabilities and the clip frame pooling."""
        return {**super().describe(), "image_size": self.image_size, "capabilities": sorted(self.capabilities),
                "frame_pooling": self.frame_pooling}
