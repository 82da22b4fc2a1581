"""The `word` and `character` vocabularies (text_dir).

The text is lowercased and split into words (`WORD_PATTERN`: runs of letters/digits/
underscore, or one punctuation mark each) or into characters (whitespace runs become one
space). Id 0 is padding, 1 a token not in the vocabulary, then the most frequent training
tokens (ties in alphabetical order), up to `max_tokens` ids in all.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from bigmodel_cli.data.text.base import Vocabulary
from bigmodel_cli.errors import DataError

WORD_PATTERN = r"\w+|[^\w\s]"


def split_text(text: str, kind: str) -> list[str]:
    """The tokens of `text` for a `word` or `character` vocabulary (lowercased)."""
    text = text.lower()
    if kind == "word":
        return re.findall(WORD_PATTERN, text)
    return list(" ".join(text.split()))


@dataclass(frozen=True)
class WordVocabulary(Vocabulary):
    """Id 0 pads, id 1 stands for any token not in the vocabulary, id 2+i is `tokens[i]`
    (most frequent in training first). `kind` is `word` or `character`."""

    kinds = ("word", "character")

    tokens: tuple[str, ...]
    kind: str = "word"
    padding = 0
    out_of_vocabulary = 1

    @classmethod
    def learn(cls, texts, kind: str, max_tokens: int) -> WordVocabulary:
        """The `max_tokens - 2` most frequent tokens of `texts`."""
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(split_text(text, kind))
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return cls(tuple(token for token, _ in ranked[: max(max_tokens - 2, 0)]), kind)

    @classmethod
    def from_json(cls, data: dict) -> WordVocabulary:
        kind = data["kind"]
        if kind == "word" and data.get("word_pattern", WORD_PATTERN) != WORD_PATTERN:
            raise DataError(
                f"vocabulary.json: words were split with {data['word_pattern']!r}, this "
                f"version splits with {WORD_PATTERN!r}; retrain to use it"
            )
        return cls(tuple(str(t) for t in data["tokens"]), kind)

    @property
    def size(self) -> int:
        return len(self.tokens) + 2

    @cached_property
    def _index(self) -> dict[str, int]:
        return {token: i for i, token in enumerate(self.tokens, start=2)}

    def encode(self, text: str) -> np.ndarray:
        """Ids of every token of `text` (no padding, no truncation)."""
        index, oov = self._index, self.out_of_vocabulary
        return np.asarray([index.get(t, oov) for t in split_text(text, self.kind)], np.int64)

    def encode_padded(self, texts, length: int) -> np.ndarray:
        """(len(texts), length) ids: each text's first `length` tokens, padded with 0 in
        front, so a recurrent layer's last step is the text's last token (the models do
        not mask padding)."""
        out = np.zeros((len(texts), length), np.int64)
        for row, text in enumerate(texts):
            ids = self.encode(text)[:length]
            if len(ids):
                out[row, length - len(ids) :] = ids
        return out

    def to_json(self) -> dict:
        data = {"kind": self.kind, "tokens": list(self.tokens)}
        if self.kind == "word":
            data["word_pattern"] = WORD_PATTERN
        return data
