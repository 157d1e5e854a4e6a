"""Phrase location by character offsets reproduces the reference word merge."""

from __future__ import annotations

import json

import pytest
from transformers import RobertaTokenizerFast

from alignbench.scoring.phrases import locate_phrase, merge_words

PUNCT = (".", ",")


@pytest.fixture(scope="module")
def tokenizer(fixture_dir):
    return RobertaTokenizerFast.from_pretrained(str(fixture_dir / "tokenizer"))


def _words(tokenizer, caption):
    enc = tokenizer(caption, return_offsets_mapping=True)
    offsets = enc["offset_mapping"][1:-1]
    return merge_words(caption, offsets, list(range(1, len(offsets) + 1)), PUNCT)


def test_merged_words_equal_reference(tokenizer, fixture_dir):
    for entry in json.loads((fixture_dir / "expected" / "tokens.json").read_text()):
        words = _words(tokenizer, entry["caption"])
        assert [w.text for w in words] == entry["merged_words"]
        token_to_word = [None] * len(entry["caption_tokens"])
        for wi, w in enumerate(words):
            for p in w.positions:
                token_to_word[p - 1] = wi
        assert token_to_word == entry["token_to_merged_word"]


def test_locate_first_full_match_case_insensitive(tokenizer):
    caption = "A blue circle and a Blue square sit on a gray table."
    words = _words(tokenizer, caption)
    positions = locate_phrase(words, "blue square")
    assert [w.text for w in words if set(w.positions) <= set(positions)] == ["Blue", "square"]
    assert locate_phrase(words, "table") is not None  # trailing '.' is dropped from the word
    assert locate_phrase(words, "green square") is None
    assert locate_phrase(words, "") is None


def test_bare_space_token_belongs_to_following_word(tokenizer):
    words = _words(tokenizer, "Grass surrounds a small turquoise hexagon.")
    hexagon = [w for w in words if w.text == "hexagon"][0]
    assert len(hexagon.positions) == 6  # bare "Ġ" + he x a g on; the "." is dropped
