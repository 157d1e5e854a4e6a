"""open_clip BPE tokenization with character offsets.

open_clip's :class:`~open_clip.tokenizer.SimpleTokenizer` returns ids only. It cleans a
caption (``ftfy`` + HTML unescape, whitespace collapsed, lower-cased), splits the cleaned text
into *units* with its regex (words, single digits, runs of punctuation, clitics such as
``'s``), and byte-level-BPE-encodes each unit. :class:`ClipTextProcessor` produces the same ids
and recovers offsets by alignment:

1. every unit is searched, case-insensitively, in the original caption from the end of the
   previous unit (the caption is lower-cased character by character with an index map back, so
   characters whose lower case is longer do not shift offsets);
2. a BPE piece's span inside its unit follows from its byte count (each character of a byte-level
   piece is one UTF-8 byte; ``</w>`` marks the unit's end and is not counted).

A unit the cleaning changed (e.g. a curly quote ``ftfy`` straightened) is not found verbatim; its
pieces get an empty span at the current position, so they never match a phrase. Besides the
standard fields, ``extra["unit_span"][b, t]`` is the ``[start, end)`` token range of the unit
token ``t`` belongs to (the adapter encodes units on their own for per-token maps) and
``extra["truncated"]`` flags captions cut at the context length.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

import torch
from open_clip.tokenizer import SimpleTokenizer

from ..base import TextBatch


def _lower_with_index(text: str) -> tuple[str, list[int]]:
    """``text`` lower-cased per character, and for every lowered character its index in ``text``."""
    chars: list[str] = []
    index: list[int] = []
    for i, c in enumerate(text):
        low = c.lower()
        chars.append(low)
        index.extend([i] * len(low))
    return "".join(chars), index


def _piece_char_spans(unit: str, pieces: list[str]) -> list[tuple[int, int]]:
    """Character span inside ``unit`` of each byte-level BPE piece."""
    starts: list[int] = []  # byte offset at which each character of ``unit`` starts
    pos = 0
    for c in unit:
        starts.append(pos)
        pos += len(c.encode("utf-8"))
    spans, b0 = [], 0
    for piece in pieces:
        b1 = b0 + len(piece.removesuffix("</w>"))
        spans.append((bisect_right(starts, b0) - 1, bisect_left(starts, b1)))
        b0 = b1
    return spans


class ClipTextProcessor:
    """Captions -> :class:`TextBatch` with open_clip's ids and character offsets (picklable).

    Layout: ``<start_of_text> pieces <end_of_text>``, padded with id 0 to the longest caption and
    truncated to ``context_length`` ids as open_clip does (the last id is then ``<end_of_text>``).
    """

    def __init__(self, tokenizer: SimpleTokenizer, context_length: int) -> None:
        if not isinstance(tokenizer, SimpleTokenizer):
            raise TypeError(f"the clip family needs open_clip's SimpleTokenizer (BPE), got {type(tokenizer).__name__}")
        self.tokenizer = tokenizer
        self.context_length = int(context_length)

    def _encode(self, caption: str) -> tuple[list[int], list[tuple[int, int]], list[tuple[int, int]]]:
        """ids, character offsets and unit token ranges of the pieces of ``caption`` (no specials)."""
        tok = self.tokenizer
        lowered, index = _lower_with_index(caption)
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        units: list[tuple[int, int]] = []
        cursor = 0
        for match in tok.pat.finditer(tok.clean_fn(caption)):
            unit = match.group()
            pieces = tok.bpe("".join(tok.byte_encoder[b] for b in unit.encode("utf-8"))).split(" ")
            found = lowered.find(unit, cursor)
            first = len(ids)
            for start, end in _piece_char_spans(unit, pieces) if found >= 0 else [(0, 0)] * len(pieces):
                if found >= 0:
                    offsets.append((index[found + start], index[found + end - 1] + 1))
                else:
                    at = index[cursor] if cursor < len(index) else len(caption)
                    offsets.append((at, at))
            ids.extend(tok.encoder[p] for p in pieces)
            units.extend([(first, len(ids))] * len(pieces))
            if found >= 0:
                cursor = found + len(unit)
        return ids, offsets, units

    def __call__(self, texts: list[str]) -> TextBatch:
        tok, room = self.tokenizer, self.context_length - 2
        encoded = [self._encode(t) for t in texts]
        L = min(self.context_length, 2 + max((len(ids) for ids, _, _ in encoded), default=0))
        B = len(encoded)
        input_ids = torch.zeros(B, L, dtype=torch.long)
        offsets = torch.zeros(B, L, 2, dtype=torch.long)
        unit_span = torch.zeros(B, L, 2, dtype=torch.long)
        special = torch.ones(B, L, dtype=torch.bool)
        attention_mask = torch.zeros(B, L, dtype=torch.long)
        for b, (ids, offs, units) in enumerate(encoded):
            n = min(len(ids), room)
            input_ids[b, : n + 2] = torch.tensor([tok.sot_token_id, *ids[:n], tok.eot_token_id])
            attention_mask[b, : n + 2] = 1
            special[b, 1 : n + 1] = False
            if n:
                offsets[b, 1 : n + 1] = torch.tensor(offs[:n])
                # token ranges shift by 1 for <start_of_text>; a unit cut by truncation ends at n
                unit_span[b, 1 : n + 1] = torch.tensor(units[:n]).clamp(max=n) + 1
        truncated = torch.tensor([len(ids) > room for ids, _, _ in encoded])
        return TextBatch(
            input_ids=input_ids,
            attention_mask=attention_mask,
            offsets=offsets,
            special=special,
            global_index=0,
            extra={"unit_span": unit_span, "truncated": truncated},
        )
