"""Shared pieces of the adapters built on transformers models (BLIP, ViLT, FLAVA, BridgeTower).

* loading: :func:`load_tokenizer`, :func:`load_image_processor` and :func:`load_hf_model`
  read local folders or the Hugging Face cache, and fail offline with an error that says how
  to fix it; :func:`load_hf_model` also builds seeded random models from a config dict;
* preprocessing: :class:`TextProcessor` (fast tokenizer -> :class:`TextBatch` with character
  offsets; picklable for DataLoader workers) and :func:`square_transform` (an HF image
  processor's normalisation as a fixed-size, picklable :class:`ImageTransform`);
* maps: :func:`patch_maps` reduces attention over ``[CLS] + patches`` keys to ``[B, L, gh, gw]``;
  :func:`capture_outputs` records module outputs; :func:`gradients_enabled` lifts the runner's
  ``inference_mode`` for gradient-based maps; :func:`gradcam_layer` picks a Grad-CAM layer;
* :class:`HFAdapter`: the adapter base these families (and ALBEF) share;
  :class:`HFModelAdapter`: its subclass for one transformers model class loaded with
  ``from_pretrained`` (hub ids, ``save_pretrained`` folders) or built from a config.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import (
    AutoImageProcessor,
    AutoTokenizer,
    BertTokenizerFast,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    RobertaTokenizerFast,
)
from transformers.image_utils import PILImageResampling

from ..hub_commands import hf_download_command
from .base import AlignmentModel, CapabilityError, MapMethod, TextBatch
from .image import ImageTransform

log = logging.getLogger(__name__)

HEAD_REDUCTIONS = ("max", "mean")
_RUN_ONLINE = "run once with network access to cache it"


# --- loading -------------------------------------------------------------------------------


def load_tokenizer(source: str | Path) -> PreTrainedTokenizerFast:
    """A fast tokenizer from a folder or a hub id (only the local cache when offline).

    A folder with only ``vocab.json`` + ``merges.txt`` is read as a RoBERTa byte-level BPE, one
    with only ``vocab.txt`` as an uncased BERT WordPiece; anything else goes through
    ``AutoTokenizer.from_pretrained(use_fast=True)``. Offsets need a fast tokenizer.
    """
    path = Path(source)
    if path.is_dir() and not (path / "tokenizer.json").is_file():
        if (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
            return RobertaTokenizerFast(vocab_file=str(path / "vocab.json"), merges_file=str(path / "merges.txt"))
        if (path / "vocab.txt").is_file():
            return BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source), use_fast=True)
    except OSError as exc:
        raise FileNotFoundError(
            f"tokenizer {str(source)!r} is neither a local folder nor in the Hugging Face cache; {_RUN_ONLINE}, "
            f"or pass --tokenizer PATH to a folder with the tokenizer files ({exc})"
        ) from exc
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise TypeError(f"tokenizer {str(source)!r} has no fast implementation (character offsets need one)")
    return tokenizer


def load_image_processor(source: str | Path) -> Any:
    """An HF image processor from a folder or a hub id (only the local cache when offline)."""
    try:
        return AutoImageProcessor.from_pretrained(str(source))
    except OSError as exc:
        if Path(source).is_dir():
            raise FileNotFoundError(
                f"model folder {str(source)!r} has no image processor (preprocessor_config.json); save the model's "
                f"image processor there with save_pretrained ({exc})"
            ) from exc
        raise FileNotFoundError(
            f"image processor of {str(source)!r} is neither a local folder nor in the Hugging Face cache; "
            f"{_RUN_ONLINE}, or pass --checkpoint PATH to a save_pretrained folder ({exc})"
        ) from exc


def pretrained_source(config: Mapping[str, Any], checkpoint: str | Path | None) -> str | None:
    """What ``from_pretrained`` reads: the folder of ``checkpoint`` (a save_pretrained folder or
    any file in one), else ``config["pretrained"]`` (a hub id), else ``None`` (random init).

    A ``checkpoint`` that does not exist, or whose folder has no ``config.json``, is a
    :class:`FileNotFoundError` that says what is expected.
    """
    if checkpoint is None:
        return config.get("pretrained")
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    folder = path if path.is_dir() else path.parent
    if not (folder / "config.json").is_file():
        where = "it" if path.is_dir() else f"its folder {folder}"
        raise FileNotFoundError(
            f"checkpoint {path} is not a Hugging Face model: {where} has no config.json; pass the folder that "
            "save_pretrained wrote (or a hub download of the model), or a file in it"
        )
    return str(folder)


def load_hf_model(
    model_cls: type[PreTrainedModel],
    config_cls: type,
    config: Mapping[str, Any],
    source: str | None,
    *,
    seed: int = 0,
    **overrides: Any,
) -> tuple[PreTrainedModel, dict[str, Any]]:
    """Build ``model_cls`` with eager attention (SDPA returns no attention weights), in eval mode.

    With ``source`` the weights come from ``from_pretrained(source, revision=config["revision"])``;
    without, ``config["architecture"]`` (keyword arguments of ``config_cls``) is built with
    weights drawn after ``torch.manual_seed(seed)`` in a forked RNG (the caller's RNG is left
    alone). ``overrides`` are config attributes set either way. Returns the model and how it
    was loaded (source, resolved commit, missing and unexpected weights; or the seed).
    """
    if source is None:
        if "architecture" not in config:
            raise ValueError(f"{model_cls.__name__}: the model config needs 'pretrained' (a hub id) or 'architecture'")
        hf_config = config_cls(**config["architecture"], **overrides)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = model_cls._from_config(hf_config, attn_implementation="eager")
        return model.eval(), {"random_init_seed": seed}
    revision = config.get("revision") if source == config.get("pretrained") else None
    try:
        model, loading = model_cls.from_pretrained(
            source, revision=revision, attn_implementation="eager", output_loading_info=True, **overrides
        )
    except OSError as exc:
        raise FileNotFoundError(
            f"{model_cls.__name__} weights {source!r} are neither a local folder nor in the Hugging Face cache; "
            f"{_RUN_ONLINE}, or fetch it with {hf_download_command(str(source), revision=revision)}, or pass --checkpoint PATH to a save_pretrained "
            f"folder ({exc})"
        ) from exc
    info = {
        "pretrained": source,
        "revision": revision,
        "commit": getattr(model.config, "_commit_hash", None),
        "missing_keys": sorted(loading["missing_keys"]),
        "unexpected_keys": sorted(loading["unexpected_keys"]),
    }
    if info["missing_keys"]:
        missing = info["missing_keys"]
        log.warning("%s from %s lacks %d weights (randomly initialised): %s", model_cls.__name__, source, len(missing), missing[:8])
    return model.eval(), info


def load_text_and_processor(
    source: str | None, tokenizer: str | Path | None, default_processor: type, *, vocab_size: int, family: str
) -> tuple[PreTrainedTokenizerFast, Any]:
    """The tokenizer (``tokenizer``, else the one of ``source``) and image processor (of
    ``source``, else ``default_processor()`` built from code) of a model; checks that every
    token id fits the model's ``vocab_size``."""
    ref = tokenizer or source
    if ref is None:
        raise ValueError(f"a randomly initialised {family} model needs a tokenizer (pass --tokenizer PATH)")
    tok = load_tokenizer(ref)
    if len(tok) > vocab_size:
        raise ValueError(f"tokenizer {str(ref)!r} has {len(tok)} tokens; the {family} model embeds only {vocab_size}")
    processor = load_image_processor(source) if source is not None else default_processor()
    return tok, processor


def check_image_size(image_size: int | None, native: int, family: str) -> int:
    """The model's own input size; another ``image_size`` is an error (position embeddings are not
    interpolated)."""
    if image_size is not None and image_size != native:
        raise ValueError(f"image_size {image_size} differs from the {family} model's {native} (position embeddings are fixed)")
    return native


# --- preprocessing -------------------------------------------------------------------------


class TextProcessor:
    """Captions -> padded :class:`TextBatch` with character offsets (picklable).

    Special and padding tokens are flagged in ``special`` and get the span ``(0, 0)``;
    captions longer than ``max_length`` ids are truncated and flagged in
    ``extra["truncated"]``. ``global_index`` is the position of the caption's global token.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerFast, max_length: int, global_index: int = 0) -> None:
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.global_index = global_index

    def __call__(self, texts: list[str]) -> TextBatch:
        texts = list(texts)
        full_lengths = [len(ids) for ids in self.tokenizer(texts)["input_ids"]]
        enc = self.tokenizer(
            texts,
            padding="longest",
            truncation=True,
            max_length=self.max_length,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            return_tensors="pt",
        )
        attention_mask = enc["attention_mask"]
        special = enc["special_tokens_mask"].bool() | (attention_mask == 0)
        return TextBatch(
            input_ids=enc["input_ids"],
            attention_mask=attention_mask,
            offsets=enc["offset_mapping"].masked_fill(special[..., None], 0),
            special=special,
            global_index=self.global_index,
            extra={"truncated": torch.tensor([n > self.max_length for n in full_lengths])},
        )


def square_transform(processor: Any, size: int) -> ImageTransform:
    """The normalisation of an HF image processor on a fixed ``size x size`` input.

    The image is squashed to ``(size, size)`` with PIL bicubic (aspect ratio not kept, as in the
    ALIGN-BENCH reference pipeline), so the patch grid is the same for every image; processors
    that keep the aspect ratio (ViLT, BridgeTower) would give each image its own grid. The
    processor must resample bicubic and rescale by 1/255, which all supported families do.
    """
    resample = getattr(processor, "resample", PILImageResampling.BICUBIC)
    rescale = getattr(processor, "rescale_factor", 1 / 255)
    if int(resample) != int(PILImageResampling.BICUBIC) or abs(rescale - 1 / 255) > 1e-12:
        raise ValueError(
            f"{type(processor).__name__} resamples with {resample!r} and rescales by {rescale}; only bicubic and 1/255 are supported"
        )
    return ImageTransform(size, processor.image_mean, processor.image_std)


# --- maps ----------------------------------------------------------------------------------


def check_layer(layer: int, n_layers: int, what: str) -> int:
    """``layer`` as a non-negative index into ``n_layers`` layers (negative counts from the end)."""
    if not -n_layers <= layer < n_layers:
        raise ValueError(f"layer {layer} out of range for {n_layers} {what}")
    return layer % n_layers


def gradcam_layer(authors: int, n_layers: int) -> int:
    """The authors' Grad-CAM layer ``authors`` where the model has it before its last layer,
    else the last but one (models shallower than the published ones, e.g. the tiny test
    configs): on the last layer only the ``[CLS]`` row reaches the ITM head, so every other
    token's Grad-CAM is 0 there."""
    return authors if authors < n_layers - 1 else max(n_layers - 2, 0)


def reduce_heads(attn: torch.Tensor, head_reduction: str) -> torch.Tensor:
    """``[B, H, ...] -> [B, ...]`` by max or mean over heads."""
    if head_reduction == "max":
        return attn.amax(dim=1)
    if head_reduction == "mean":
        return attn.mean(dim=1)
    raise ValueError(f"head_reduction must be one of {HEAD_REDUCTIONS}, not {head_reduction!r}")


def patch_maps(attn: torch.Tensor, grid: tuple[int, int], head_reduction: str, *, cls_keys: int = 1) -> torch.Tensor:
    """Text->image attention ``[B, H, L, cls_keys + gh*gw]`` -> maps ``[B, L, gh, gw]``.

    The first ``cls_keys`` key columns (the image [CLS]) are dropped and the rest are **not**
    renormalised, so a map's sum is the attention mass on the patches (the ALIGN-BENCH
    reference). Patch keys are in row-major order. Heads are reduced by ``head_reduction``.
    """
    gh, gw = grid
    if attn.shape[-1] != cls_keys + gh * gw:
        raise ValueError(f"attention has {attn.shape[-1]} keys; expected {cls_keys} [CLS] + {gh}x{gw} patches")
    reduced = reduce_heads(attn[..., cls_keys:], head_reduction)
    return reduced.reshape(*reduced.shape[:2], gh, gw)


def mask_padding(maps: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Zero the maps of padding rows (``attention_mask == 0``)."""
    return maps * attention_mask[:, :, None, None].to(device=maps.device, dtype=maps.dtype)


@contextlib.contextmanager
def capture_outputs(module: torch.nn.Module) -> Iterator[list[Any]]:
    """Record every output of ``module`` while the context is open (a forward hook)."""
    outputs: list[Any] = []
    handle = module.register_forward_hook(lambda _m, _i, out: outputs.append(out))
    try:
        yield outputs
    finally:
        handle.remove()


@contextlib.contextmanager
def gradients_enabled() -> Iterator[None]:
    """Autograd on, even inside the runner's ``torch.inference_mode()``."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


# --- adapter base --------------------------------------------------------------------------


class HFAdapter(AlignmentModel):
    """Base of the transformers-backed adapters: preprocessing, grid, validation, provenance.

    Subclasses set ``family``, ``capabilities``, ``map_methods`` and ``num_map_layers`` and
    implement the capability methods.
    """

    family: ClassVar[str] = ""

    def __init__(
        self,
        model: PreTrainedModel,
        text: TextProcessor,
        transform: ImageTransform,
        patch_size: int,
        load_info: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if transform.size % patch_size:
            raise ValueError(f"image size {transform.size} is not a multiple of the patch size {patch_size}")
        self.model = model
        self.text = text
        self.transform = transform
        self.patch_size = patch_size
        self.load_info = dict(load_info or {})

    @property
    def image_size(self) -> int:
        return self.transform.size

    @property
    def grid_size(self) -> tuple[int, int]:
        g = self.transform.size // self.patch_size
        return g, g

    @property
    def num_map_layers(self) -> int:
        """How many layers ``MapMethod.layer`` indexes."""
        raise NotImplementedError

    def image_transform(self) -> ImageTransform:
        return self.transform

    def tokenize(self, texts: list[str]) -> TextBatch:
        return self.text(texts)

    def text_processor(self) -> TextProcessor:
        return self.text

    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def check_method(self, method: MapMethod) -> int:
        """Validate ``method`` for this model; returns its layer as a non-negative index."""
        if method.name not in self.map_methods:
            raise CapabilityError(f"{self.family} models have no map method {method.name!r}; use one of {self.map_methods}")
        if method.head_reduction not in HEAD_REDUCTIONS:
            raise ValueError(f"head_reduction must be one of {HEAD_REDUCTIONS}, not {method.head_reduction!r}")
        return check_layer(method.layer, self.num_map_layers, f"{self.family} map layers")

    def require(self, capability: str) -> None:
        """Raise :class:`CapabilityError` unless ``capability`` is declared."""
        if capability not in self.capabilities:
            raise CapabilityError(f"this {self.family} model has no {capability!r} capability")

    def describe(self) -> dict:
        """Provenance, family, parameters, how the weights were loaded and the model config."""
        return {
            **super().describe(),
            "load": self.load_info,
            "image_size": self.image_size,
            "capabilities": sorted(self.capabilities),
            "map_methods": list(self.map_methods),
            "config": self.model.config.to_diff_dict(),
        }


class HFModelAdapter(HFAdapter):
    """An :class:`HFAdapter` over one transformers model class (BLIP, ViLT, FLAVA, BridgeTower).

    Subclasses also set ``hf_model``, ``hf_config`` and ``hf_processor`` (the transformers
    classes; the processor is built from code for randomly initialised models) and
    ``hf_overrides`` (config attributes set on every load), and override :meth:`text_config`,
    :meth:`vision_config` and :meth:`max_text_length` where their config differs. The family
    builder is :meth:`build`.
    """

    hf_model: ClassVar[type[PreTrainedModel]]
    hf_config: ClassVar[type[PretrainedConfig]]
    hf_processor: ClassVar[type]
    hf_overrides: ClassVar[Mapping[str, Any]] = {}
    checkpoint_folders: ClassVar[bool] = True

    @classmethod
    def build(
        cls,
        config: Mapping[str, Any],
        *,
        checkpoint: str | Path | None = None,
        tokenizer: str | Path | None = None,
        image_size: int | None = None,
        seed: int = 0,
    ) -> HFModelAdapter:
        """An adapter in eval mode, its weights, tokenizer and image processor from one source.

        ``config``: ``{"pretrained": hub id, "revision": ...}`` or ``{"architecture":
        hf_config keyword arguments}`` (seeded random weights, no download); ``checkpoint`` (a
        save_pretrained folder or a file in one) replaces ``pretrained`` (see
        :func:`pretrained_source`). ``tokenizer`` replaces the source's own (a random model
        needs one); ``image_size`` must be the model's own. Captions are truncated to
        :meth:`max_text_length` tokens.
        """
        source = pretrained_source(config, checkpoint)
        model, info = cls.load_network(config, source, seed=seed)
        text_config, vision_config = cls.text_config(model.config), cls.vision_config(model.config)
        tok, processor = load_text_and_processor(source, tokenizer, cls.hf_processor, vocab_size=text_config.vocab_size, family=cls.family)
        size = check_image_size(image_size, vision_config.image_size, cls.family)
        text = TextProcessor(tok, min(tok.model_max_length, cls.max_text_length(text_config)))
        return cls(model, text, square_transform(processor, size), vision_config.patch_size, info).eval()

    @staticmethod
    def text_config(config: PretrainedConfig) -> PretrainedConfig:
        """The part of the model config with the text ``vocab_size`` and ``max_position_embeddings``."""
        return config.text_config

    @staticmethod
    def vision_config(config: PretrainedConfig) -> PretrainedConfig:
        """The part of the model config with the ``image_size`` and ``patch_size``."""
        return config.vision_config

    @staticmethod
    def max_text_length(text_config: PretrainedConfig) -> int:
        """Most tokens a caption may have (the text position table's size)."""
        return text_config.max_position_embeddings

    @classmethod
    def load_network(cls, config: Mapping[str, Any], source: str | None, seed: int = 0) -> tuple[PreTrainedModel, dict[str, Any]]:
        """:func:`load_hf_model` with the family's classes: from ``source`` (see
        :func:`pretrained_source`) or, without one, seeded random weights."""
        return load_hf_model(cls.hf_model, cls.hf_config, config, source, seed=seed, **cls.hf_overrides)

    @classmethod
    def architecture(cls, config: Mapping[str, Any]) -> PreTrainedModel | None:
        """The network of an ``architecture`` config; ``None`` for a hub model (its config is a download)."""
        return None if config.get("pretrained") else cls.load_network(config, None)[0]

    @classmethod
    def weights_source(cls, config: Mapping[str, Any]) -> str | None:
        """``hf://REPO@REVISION`` of a hub model's config."""
        pretrained = config.get("pretrained")
        return f"hf://{pretrained}@{config.get('revision') or 'main'}" if pretrained else None
