"""Rebuild the bundled tiny byte-level BPE tokenizer (``alignbench/assets/tiny-bpe``).

The tiny models (``meter-tiny-random`` and the trained tiny checkpoints) need a RoBERTa-style
tokenizer that ships with the package. It is trained on captions of the synthetic suite's
*train* split, so every word of the synthetic grammar is a token or a few pieces; any other
text still tokenizes (byte-level fallback). Run: ``python tools/build_tiny_tokenizer.py``.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import ByteLevelBPETokenizer

from alignbench.data.synthetic import SyntheticGroundingSource, SyntheticRetrievalSource

OUT = Path(__file__).resolve().parents[1] / "alignbench" / "assets" / "tiny-bpe"
VOCAB_SIZE = 1000
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def corpus() -> list[str]:
    """Captions of the synthetic train split (scenes and retrieval paraphrases)."""
    scenes = SyntheticGroundingSource(size="full", split="train")
    texts = [scenes[i].caption for i in range(len(scenes))]
    texts += SyntheticRetrievalSource(size="mini", split="train").captions
    return texts + [t.capitalize() for t in texts]


def main() -> None:
    tok = ByteLevelBPETokenizer(add_prefix_space=False)
    tok.train_from_iterator(corpus(), vocab_size=VOCAB_SIZE, min_frequency=2, special_tokens=SPECIALS, show_progress=False)
    OUT.mkdir(parents=True, exist_ok=True)
    tok.save_model(str(OUT))
    print(f"wrote {OUT} ({tok.get_vocab_size()} tokens)")


if __name__ == "__main__":
    main()
