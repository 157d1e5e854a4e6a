"""The adapter contract every model family implements.

A model adapter wraps one vision-language model behind four things a task can ask for:

* preprocessing: :meth:`AlignmentModel.image_transform` (PIL image -> tensor, picklable so
  DataLoader workers can run it) and :meth:`AlignmentModel.tokenize` (captions -> a padded
  :class:`TextBatch` with character offsets, so phrases are located by offsets and never by
  tokenizer-specific markers);
* the capabilities it declares in :attr:`AlignmentModel.capabilities`:

  - ``"maps"``: :meth:`AlignmentModel.text_image_maps` returns text-token -> image-patch
    relevance ``[B, L, gh, gw]`` for every text position (the global token included);
  - ``"match"``: :meth:`AlignmentModel.match_scores` returns an image-text matching score ``[B]``;
  - ``"embed"``: :meth:`AlignmentModel.embed_images` / :meth:`AlignmentModel.embed_texts`
    return global embeddings ``[B, D]``;
  - ``"video"``: :meth:`AlignmentModel.text_image_maps`, :meth:`AlignmentModel.match_scores`
    and :meth:`AlignmentModel.embed_images` also take a batch of clips ``[B, T, 3, H, W]``
    (``T`` frames each); maps are then ``[B, L, T, gh, gw]`` (every text position over every
    frame's patches), match scores ``[B]`` and embeddings ``[B, D]`` (one per clip).

A task lists the capabilities it needs; :func:`require_capabilities` turns a missing one into a
clear error before any work starts.

Phrase maps: by default a phrase's map is the sum of its tokens' rows of
:meth:`AlignmentModel.text_image_maps` (the reference for fusion models, where every token
attends within the whole caption). A family that can encode a phrase on its own (a dual encoder:
a phrase map compares the image with the phrase's own text embedding) sets
:attr:`AlignmentModel.standalone_phrase_maps` and implements
:meth:`AlignmentModel.phrase_image_maps`; the local-local probe then uses it and records which
way its phrase maps were made. Which phrases are scored is decided by character offsets in the
caption either way.

What a family offers is known without weights: the class attributes ``capabilities`` and
``map_methods``, :meth:`AlignmentModel.architecture` (the bare network, for parameter counts) and
:meth:`AlignmentModel.weights_source` are read by ``alignbench list models`` from the family's
adapter class (the builder is its classmethod or names it as its return annotation).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Callable, ClassVar

import torch
from PIL import Image

CAPABILITIES = ("maps", "match", "embed", "video")


class CapabilityError(RuntimeError):
    """A model lacks a capability a task needs."""


@dataclass
class TextBatch:
    """Tokenized, padded captions.

    ``offsets[b, t]`` is the ``(start, end)`` character span of token ``t`` in caption ``b``;
    special and padding tokens have ``special[b, t] = True`` and span ``(0, 0)``.
    ``global_index`` is the position of the token whose map is the caption's global map.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    offsets: torch.Tensor
    special: torch.Tensor
    global_index: int = 0
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "TextBatch":
        """Move every tensor to ``device``."""
        moved = {
            f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        extra = {k: v.to(device, non_blocking=non_blocking) for k, v in self.extra.items()}
        return TextBatch(**moved, global_index=self.global_index, extra=extra)

    def pin_memory(self) -> "TextBatch":
        """Pin every tensor (called by DataLoader with ``pin_memory=True``)."""
        pinned = {f.name: getattr(self, f.name).pin_memory() for f in fields(self) if isinstance(getattr(self, f.name), torch.Tensor)}
        return TextBatch(**pinned, global_index=self.global_index, extra={k: v.pin_memory() for k, v in self.extra.items()})

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def rows(self, index: torch.Tensor | slice) -> "TextBatch":
        """The captions at ``index`` (a slice or a 1-D index tensor), padding unchanged."""
        picked = {f.name: getattr(self, f.name)[index] for f in fields(self) if isinstance(getattr(self, f.name), torch.Tensor)}
        return TextBatch(**picked, global_index=self.global_index, extra={k: v[index] for k, v in self.extra.items()})


@dataclass(frozen=True)
class MapMethod:
    """How text -> image relevance maps are computed; recorded in every result."""

    name: str = "attention"
    layer: int = -1
    head_reduction: str = "max"

    def as_dict(self) -> dict:
        return {"name": self.name, "layer": self.layer, "head_reduction": self.head_reduction}


class AlignmentModel(torch.nn.Module):
    """Base class of model adapters; see the module docstring for the contract."""

    family: ClassVar[str] = ""
    capabilities: ClassVar[frozenset[str]] = frozenset()
    map_methods: ClassVar[tuple[str, ...]] = ()
    checkpoint_folders: ClassVar[bool] = False  # whether a checkpoint may be a save_pretrained folder
    standalone_phrase_maps: ClassVar[bool] = False  # whether phrase_image_maps encodes each phrase on its own

    @classmethod
    def architecture(cls, config: Mapping[str, Any]) -> torch.nn.Module | None:
        """The network a registered ``config`` describes (initial weights, no tokenizer), or
        ``None`` when building it needs a download; called under ``torch.device("meta")`` to
        count parameters without allocating them."""
        return None

    @classmethod
    def weights_source(cls, config: Mapping[str, Any]) -> str | None:
        """Where ``config`` itself says the weights come from (e.g. ``hf://REPO@REVISION``) for
        families that fetch them on their own; ``None`` otherwise."""
        return None

    def default_map_method(self, name: str) -> MapMethod:
        """Map method ``name`` with the layer and head reduction a run uses when it sets neither
        (``protocol.layer`` / ``protocol.head_reduction``): the last layer with heads reduced by
        max (the ALIGN-BENCH reference) unless the family documents its authors' choice."""
        return MapMethod(name=name)

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patch grid ``(gh, gw)`` of the maps at the current image size."""
        raise NotImplementedError

    @property
    def image_size(self) -> int:
        """Side of the square model input in pixels."""
        raise NotImplementedError

    def image_transform(self) -> Callable[[Image.Image], torch.Tensor]:
        """A picklable callable: PIL image -> normalised ``[3, S, S]`` tensor."""
        raise NotImplementedError

    def tokenize(self, texts: list[str]) -> TextBatch:
        """Tokenize and pad ``texts`` into one :class:`TextBatch`."""
        raise NotImplementedError

    def text_processor(self) -> Callable[[list[str]], TextBatch]:
        """A callable doing :meth:`tokenize` for DataLoader workers; families whose tokenizer
        pickles on its own should return it without the model."""
        return self.tokenize

    def text_image_maps(self, pixel_values: torch.Tensor, text: TextBatch, method: MapMethod) -> torch.Tensor:
        """Relevance of every text position over the image patches, ``[B, L, gh, gw]``
        (``[B, L, T, gh, gw]`` for clips ``[B, T, 3, H, W]``, capability ``"video"``)."""
        raise CapabilityError(f"{type(self).__name__} does not produce text->image maps")

    def phrase_image_maps(self, pixel_values: torch.Tensor, sample_index: torch.Tensor, phrases: list[str], method: MapMethod) -> torch.Tensor:
        """Relevance of each phrase, encoded on its own as a caption, over the patches of its
        sample's image: ``phrases[p]`` belongs to image ``sample_index[p]``; ``[P, gh, gw]``
        (``[P, T, gh, gw]`` for clips ``[B, T, 3, H, W]``, capability ``"video"``). Offered when
        :attr:`standalone_phrase_maps` is set."""
        raise CapabilityError(
            f"{type(self).__name__} does not encode phrases on their own; a phrase map sums the phrase's token rows of text_image_maps"
        )

    def match_scores(self, pixel_values: torch.Tensor, text: TextBatch) -> torch.Tensor:
        """Image-text matching score per pair, ``[B]`` (higher = better match)."""
        raise CapabilityError(f"{type(self).__name__} has no image-text matching head")

    def embed_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Global image embeddings ``[B, D]`` (not necessarily normalised)."""
        raise CapabilityError(f"{type(self).__name__} has no global image embedding")

    def embed_texts(self, text: TextBatch) -> torch.Tensor:
        """Global text embeddings ``[B, D]`` (not necessarily normalised)."""
        raise CapabilityError(f"{type(self).__name__} has no global text embedding")

    def describe(self) -> dict:
        """Provenance of this model instance for result files (name, checkpoint, sha256, ...).

        :func:`alignbench.load_model` stores what it knows in ``self.provenance``."""
        return {
            **getattr(self, "provenance", {}),
            "family": self.family,
            "parameters": sum(p.numel() for p in self.parameters()),
        }


def require_capabilities(model: AlignmentModel, model_name: str, task_name: str, needed: set[str] | frozenset[str], why: str = "") -> None:
    """Raise :class:`CapabilityError` naming model, task and the missing capabilities."""
    missing = sorted(set(needed) - set(model.capabilities))
    if missing:
        reason = why or f"it needs {', '.join(missing)}"
        raise CapabilityError(
            f"model {model_name!r} cannot run task {task_name!r} because {reason}; "
            f"{model_name} provides: {', '.join(sorted(model.capabilities)) or 'nothing'}"
        )
