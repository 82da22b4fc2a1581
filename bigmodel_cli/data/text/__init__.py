"""Vocabularies that turn text into token ids and back, one per file over a shared base
(`base.py`: the JSON form, the byte alphabet). NumPy and the standard library only: no
TensorFlow, so a vocabulary loads as fast as a config.

A vocabulary is learned from the *training* split only and saved in the run directory
(`vocabulary.json`), so `evaluate`, `predict` and `generate` encode raw text exactly as
training did.

- `byte` (text_corpus, `byte.py`): one token per byte value seen in the training text, an
  end-of-document token and an unknown-byte token. Held-out text may contain bytes
  training never saw (they become the unknown token, and count against the model); a
  prompt may not: encoding it strictly is an error that names the bytes.
- `bpe` (text_corpus, `bpe.py`): byte-level byte-pair encoding over the same byte tokens.
- `word` and `character` (text_dir, `word.py`): lowercased words or characters, padding
  and out-of-vocabulary ids, then the most frequent training tokens.
"""

from __future__ import annotations

from bigmodel_cli.data.text.base import Vocabulary, vocabulary_from_json
from bigmodel_cli.data.text.bpe import (
    _CHUNKS,
    BPE_LEARN_MAX_BYTES,
    CHUNK_PATTERN,
    BPEVocabulary,
    learn_bpe,
)
from bigmodel_cli.data.text.byte import ByteVocabulary
from bigmodel_cli.data.text.word import WORD_PATTERN, WordVocabulary, split_text

__all__ = [
    "BPE_LEARN_MAX_BYTES",
    "CHUNK_PATTERN",
    "WORD_PATTERN",
    "_CHUNKS",
    "BPEVocabulary",
    "ByteVocabulary",
    "Vocabulary",
    "WordVocabulary",
    "learn_bpe",
    "split_text",
    "vocabulary_from_json",
]
