"""Token ids for the text a reader returned, once its splits are known: the vocabulary
is learned from the training split only (or taken from a trained run's
`vocabulary.json`), so held-out text is encoded as unseen text would be.

- **text** (text_dir): each text becomes `sequence_length` ids of a `word` or
  `character` vocabulary of at most `max_tokens` ids: its first `sequence_length`
  tokens, padded with 0 in front.
- **documents** (text_corpus): each split is one stream of `byte` or `bpe` ids,
  documents joined by an end-of-document token, kept in a token file
  (data/token_cache.py) and cut into sequences of `sequence_length` inputs whose labels
  are the same shifted by one. Sequences are packed across document boundaries (no
  padding); a trailing piece shorter than one sequence is dropped.
"""

from __future__ import annotations

import numpy as np

from bigmodel_cli.config import Config
from bigmodel_cli.data.defaults import TEXT_CORPUS_SEQUENCE_LENGTH, TEXT_DIR_SEQUENCE_LENGTH
from bigmodel_cli.data.raw import DealtDocuments, RawData
from bigmodel_cli.data.text import WordVocabulary, vocabulary_from_json
from bigmodel_cli.data.token_cache import corpus_tokens, portion_bytes
from bigmodel_cli.errors import DataError
from bigmodel_cli.spec import Arrays, TokenWindows

DEFAULT_MAX_TOKENS = 20_000


# === text (text_dir) =========================================================


def sequence_length(cfg: Config) -> int:
    """Tokens per text_dir example."""
    return cfg.data.sequence_length or TEXT_DIR_SEQUENCE_LENGTH


def learn_vocabulary(texts, cfg: Config):
    """The `word`/`character` vocabulary of `texts` (the training split's)."""
    max_tokens = cfg.data.max_tokens or DEFAULT_MAX_TOKENS
    if max_tokens < 3:
        raise DataError(
            f"data.max_tokens: {max_tokens} leaves no id for a token (0 is padding, 1 out of "
            "vocabulary); use at least 3"
        )
    return WordVocabulary.learn(texts, cfg.data.tokenizer or "word", max_tokens)


def encode_texts(texts: list[str], vocabulary, cfg: Config) -> np.ndarray:
    """(len(texts), sequence_length) token ids, as training encoded its texts."""
    return vocabulary.encode_padded(texts, sequence_length(cfg))


def vectorize_splits(
    splits: dict[str, Arrays | None], cfg: Config, vocabulary: dict | None
) -> tuple[dict[str, Arrays | None], object]:
    """Splits of strings -> splits of token ids, with the vocabulary learned from the
    training split (or restored from `vocabulary`, a trained run's JSON)."""
    if vocabulary is not None:
        words = vocabulary_from_json(vocabulary)
        if not isinstance(words, WordVocabulary):
            raise DataError(
                f"vocabulary.json: a {words.kind!r} vocabulary (text_corpus) cannot encode "
                "text_dir data, which needs a 'word' or 'character' one"
            )
    else:
        words = learn_vocabulary(splits["train"].x, cfg)
    encoded = {
        name: Arrays(encode_texts(part.x, words, cfg), part.y) if part is not None else None
        for name, part in splits.items()
    }
    return encoded, words


# === documents (text_corpus) =================================================


def pack(ids: np.ndarray, sequence_length: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, next-token labels), each (n, sequence_length), from one token stream."""
    n = (len(ids) - 1) // sequence_length
    if n < 1:
        return np.zeros((0, sequence_length), np.int64), np.zeros((0, sequence_length), np.int64)
    x = ids[: n * sequence_length].reshape(n, sequence_length)
    y = ids[1 : n * sequence_length + 1].reshape(n, sequence_length)
    return x, y


def given_corpus_vocabulary(vocabulary: dict | None):
    """A trained run's vocabulary to encode a corpus with (byte or bpe), or None."""
    given = vocabulary_from_json(vocabulary) if vocabulary else None
    if given is not None and given.kind not in ("byte", "bpe"):
        raise DataError(
            f"data.source: text_corpus needs a byte or bpe vocabulary; the run's is "
            f"{given.kind!r} (a text_dir classifier): score it on text_dir data"
        )
    return given


def encode_documents(dealt: DealtDocuments, cfg: Config, vocabulary: dict | None) -> RawData:
    """Packed (x, y) token sequences of each portion, read from its token file (made
    once, data/token_cache.py), with the training portion's vocabulary (or
    `vocabulary`, a trained run's), as RawData whose splits are dealt."""
    given = given_corpus_vocabulary(vocabulary)
    length = cfg.data.sequence_length or TEXT_CORPUS_SEQUENCE_LENGTH
    corpus = corpus_tokens(dealt, cfg, given)
    words = corpus.vocabulary
    splits, problems = {}, []
    for name, docs in dealt.portions.items():  # test, validation, train
        stored = corpus.files[name]
        count = max(0, (stored.tokens - 1) // length)
        if count:
            windows = TokenWindows(str(stored.path), corpus.dtype, count, length)
            splits[name] = Arrays.from_windows(windows)
        else:
            empty = np.zeros((0, length), np.int64)
            splits[name] = Arrays(empty, empty)
        if docs and not count:
            problems.append(_too_short(name, stored.tokens, length, dealt))
    if problems:
        raise DataError(problems)
    measure = corpus.files["validation" if len(splits["validation"]) else "train"]
    train = splits["train"]
    return RawData(
        x=train.x,
        y=train.y,
        task="language_model",
        kind="tokens",
        description=f"{dealt.description}, {words.kind} tokens (vocabulary {words.size}), "
        f"sequences of {length}",
        num_classes=words.size,
        vocab_size=words.size,
        dealt=splits,
        vocabulary=words,
        bytes_per_token=measure.text_bytes / max(measure.tokens, 1),
        token_bytes=tuple(words.token_bytes()),
        digest=dealt.digest,
        notes=[f"token files: {corpus.folder}" + (" (reused)" if corpus.reused else "")],
    )


def _too_short(name: str, tokens: int, length: int, dealt: DealtDocuments) -> str:
    if name != "train":
        return (
            f"data: the {name} portion of the corpus has {tokens} tokens, fewer than "
            f"one sequence of data.sequence_length + 1 = {length + 1}; use more text, a "
            f"larger {name}_split, or a shorter sequence_length"
        )
    total = sum(portion_bytes(docs) for docs in dealt.portions.values())
    return (
        f"data: the corpus ({total:,} bytes in {dealt.files} file(s)) gives "
        f"{tokens} training tokens, fewer than one sequence of "
        f"data.sequence_length + 1 = {length + 1}; use more text or a shorter "
        f"sequence_length"
    )
