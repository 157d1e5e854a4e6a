"""Adding a model family in a few dozen lines: a training-free "colour word" model.

Every word of a caption that names a colour attends to the image patches of that colour; the
caption's global token attends to every colour the caption names. It has no weights, so it runs
anywhere, and it shows the whole adapter contract of :mod:`alignbench.models.base`: image
preprocessing, tokenization with character offsets, the patch grid and a declared capability.

    python examples/colour_word_model.py      # scores it on the offline synthetic suite
"""

from __future__ import annotations

import re
import tempfile
from typing import Any

import torch
import torch.nn.functional as F

import alignbench
from alignbench.models.base import AlignmentModel, MapMethod, TextBatch
from alignbench.models.factory import FAMILIES, MODELS, ModelSpec
from alignbench.models.image import ImageTransform

PALETTE = {"red": (1.0, 0.0, 0.0), "green": (0.0, 0.6, 0.2), "blue": (0.1, 0.3, 0.9), "yellow": (1.0, 0.85, 0.0),
           "orange": (1.0, 0.5, 0.0), "purple": (0.5, 0.2, 0.7), "pink": (1.0, 0.5, 0.75), "white": (1.0, 1.0, 1.0),
           "black": (0.05, 0.05, 0.05), "brown": (0.5, 0.3, 0.15), "gray": (0.5, 0.5, 0.5), "cyan": (0.1, 0.8, 0.9)}
NAMES = list(PALETTE)
PATCH = 16


class ColourWordModel(AlignmentModel):
    """Maps from colour words: closeness of each patch's mean colour to the word's colour."""

    family = "colour-words"
    capabilities = frozenset({"maps"})
    map_methods = ("colour-similarity",)

    def __init__(self, image_size: int = 128) -> None:
        super().__init__()
        self._size = image_size
        self.register_buffer("colours", torch.tensor([PALETTE[n] for n in NAMES]))

    @classmethod
    def build(cls, config: dict[str, Any], *, checkpoint: Any = None, tokenizer: Any = None, image_size: int | None = None) -> ColourWordModel:
        """The family's builder: ``load_model`` passes the registered config and overrides."""
        return cls(image_size or 128)

    @classmethod
    def architecture(cls, config: dict[str, Any]) -> ColourWordModel:
        return cls()  # what `alignbench list models` counts: no parameters

    @classmethod
    def weights_source(cls, config: dict[str, Any]) -> str:
        return "none (training-free)"

    @property
    def image_size(self) -> int:
        return self._size

    @property
    def grid_size(self) -> tuple[int, int]:
        return (self._size // PATCH, self._size // PATCH)

    def image_transform(self) -> ImageTransform:
        return ImageTransform(self._size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # RGB in [0, 1]

    def tokenize(self, texts: list[str]) -> TextBatch:
        """Position 0 is the global token; then one token per word, with its character span."""
        spans = [[m.span() for m in re.finditer(r"[A-Za-z]+", t)] for t in texts]
        shape = (len(texts), 1 + max(map(len, spans)))
        ids, mask = torch.full(shape, -1), torch.zeros(shape, dtype=torch.long)
        offsets, special = torch.zeros(*shape, 2, dtype=torch.long), torch.ones(shape, dtype=torch.bool)
        for b, (text, words) in enumerate(zip(texts, spans)):
            mask[b, : 1 + len(words)] = 1
            for t, (start, end) in enumerate(words, start=1):
                offsets[b, t], special[b, t] = torch.tensor([start, end]), False
                word = text[start:end].lower()
                ids[b, t] = NAMES.index(word) if word in PALETTE else -1  # -1: not a colour word
        return TextBatch(ids, mask, offsets, special, global_index=0)

    def text_image_maps(self, pixel_values: torch.Tensor, text: TextBatch, method: MapMethod) -> torch.Tensor:
        patches = F.avg_pool2d(pixel_values, PATCH)  # [B, 3, gh, gw]: each patch's mean colour
        distance = ((patches[:, None] - self.colours[None, :, :, None, None]) ** 2).sum(2)  # [B, colours, gh, gw]
        closeness = torch.cat([torch.exp(-distance / 0.05), torch.zeros_like(distance[:, :1])], 1)  # last: no colour
        ids = text.input_ids.to(pixel_values.device)
        maps = closeness[torch.arange(len(ids))[:, None], torch.where(ids >= 0, ids, len(NAMES))]  # [B, L, gh, gw]
        maps[:, 0] = maps[:, 1:].sum(1)  # the global token: every colour the caption names
        return maps + 1e-6  # never an all-zero map


FAMILIES.register("colour-words", ColourWordModel.build)
MODELS.register("colour-words", ModelSpec(name="colour-words", family="colour-words", description=__doc__.splitlines()[0]))


def main(limit: int | None = None) -> list[dict[str, Any]]:
    """Score the colour-word model on the synthetic suite and print its box scores."""
    with tempfile.TemporaryDirectory() as out:
        results = alignbench.evaluate(alignbench.load_model("colour-words"), alignbench.load_tasks(["align-bench-synth"]),
                                      model_name="colour-words", output_dir=out, options=alignbench.RunOptions(limit=limit, quiet=True))
    for result in results:
        print(f"{result['task']:26s} box_score {result['metrics']['box_score']:.4f}")
    return results


if __name__ == "__main__":
    main()
