"""Locating annotated phrases among a caption's tokens, by character offsets.

The reference merges BPE pieces into words and matches a phrase's words against them. Here
the same rule is stated on character offsets, so it holds for every tokenizer:

* a token starts a new word when whitespace separates it from the previous caption token
  (the first caption token always starts word 0);
* a token whose text is exactly one of the punctuation tokens (``.`` and ``,``) and that does
  not start a word is dropped;
* a phrase matches the first run of consecutive words equal to its whitespace-split words,
  case-insensitively; its map is the sum of the maps of all tokens of those words.

A phrase with no match is reported as missing; it is never scored with a fallback token.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Word:
    """A merged word: its text and the token positions whose maps it sums."""

    text: str
    positions: tuple[int, ...]


def merge_words(caption: str, offsets: list[tuple[int, int]], positions: list[int], punctuation: tuple[str, ...]) -> list[Word]:
    """Merge the caption tokens at ``positions`` (with character ``offsets``) into words."""
    words: list[tuple[list[str], list[int]]] = []
    prev_end: int | None = None
    for pos, (start, end) in zip(positions, offsets):
        piece = caption[start:end]
        starts_word = prev_end is None or any(c.isspace() for c in caption[prev_end:start])
        prev_end = end
        if starts_word:
            words.append(([piece], [pos]))
        elif piece not in punctuation:
            words[-1][0].append(piece)
            words[-1][1].append(pos)
    return [Word("".join(texts), tuple(ps)) for texts, ps in words]


def locate_phrase(words: list[Word], phrase: str) -> tuple[int, ...] | None:
    """Token positions of the first occurrence of ``phrase`` among ``words``, or ``None``."""
    target = phrase.lower().split()
    if not target:
        return None
    lowered = [w.text.lower() for w in words]
    for i in range(len(words) - len(target) + 1):
        if lowered[i : i + len(target)] == target:
            return tuple(p for w in words[i : i + len(target)] for p in w.positions)
    return None
