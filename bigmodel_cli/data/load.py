"""`load_data`: read the source, split, tokenize text, normalize, lay out for the model.

NumPy only: the steps are the modules beside this one (sources/, splits, tokenize,
normalize, layout); nothing here imports TensorFlow.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from bigmodel_cli.config import Config
from bigmodel_cli.config.defaults import effective_loss
from bigmodel_cli.data.decode import standardize_encoded
from bigmodel_cli.data.decoded_cache import with_decoded_cache
from bigmodel_cli.data.layout import data_spec, layout_shape, model_fit_problems
from bigmodel_cli.data.normalize import (
    FLOAT_KINDS,
    Normalization,
    bundle_normalization,
    normalize_splits,
)
from bigmodel_cli.data.raw import DealtDocuments, RawData
from bigmodel_cli.data.sources import read_source
from bigmodel_cli.data.splits import file_test_split, limit_dealt, split_indices
from bigmodel_cli.data.tokenize import encode_documents, sequence_length, vectorize_splits
from bigmodel_cli.errors import DataError
from bigmodel_cli.spec import Arrays, DataBundle

Indices = tuple[np.ndarray, np.ndarray, np.ndarray]


def load_data(
    cfg: Config,
    base_dir: Path,
    *,
    normalization: Normalization | None = None,
    parent_normalization: Normalization | None = None,
    vocabulary: dict | None = None,
    same_corpus: bool = False,
) -> DataBundle:
    """Read, split, normalize and lay out `cfg.data` for `cfg.model`.

    `base_dir` resolves relative paths (the config file's folder). `normalization` and
    `vocabulary` (JSON form) replace what would be learned from the training split
    (e.g. a trained run's, to evaluate or predict on other data). `parent_normalization`
    (a fine-tuned run's parent's) replaces them only when the examples have the shape it
    was measured on: the copied layers then see inputs scaled as in the parent's
    training. `same_corpus`: the
    data is the run's own (resume, evaluate), so a text corpus whose files changed since
    training is an error: its documents would be dealt to the splits differently.
    """
    raw = read_source(cfg, Path(base_dir))
    if isinstance(raw, DealtDocuments):  # tokens first: the vocabulary sizes the model
        raw = encode_documents(raw, cfg, vocabulary)
    if same_corpus:
        _check_same_corpus(raw, vocabulary)
    shape, indices = _check_fit_and_split(raw, cfg)
    splits, notes = _split(raw, indices, cfg)
    if raw.kind == "text":  # one string per example: ids come after the split
        # The vocabulary comes from the training split only (or the trained run's).
        splits, words = vectorize_splits(splits, cfg, vocabulary)
        raw = replace(raw, kind="tokens", vocab_size=words.size, vocabulary=words)
    if raw.encoded is not None and cfg.data.cache == "disk":
        notes.append(_cache_decoded(splits))
    elif cfg.data.cache == "disk":
        notes.append("data.cache: disk: these examples are held in memory, not cached")
    elif raw.encoded is not None:
        size = len(raw.encoded) * int(np.prod(raw.encoded.shape))
        notes.append(
            f"the images are decoded again every epoch; data.cache: disk would decode them "
            f"once, into {size / 1e6:,.0f} MB of disk, and train faster (see Large data)"
        )
    stats = None
    if (
        cfg.data.normalize
        and raw.kind in FLOAT_KINDS
        and normalization is None
        and parent_normalization
    ):
        normalization = _fitting(parent_normalization, raw, notes)
    if cfg.data.normalize and raw.kind in FLOAT_KINDS and raw.encoded is not None:
        stats, note = standardize_encoded(splits, normalization, cfg.seed)
        notes.append(note)
    elif cfg.data.normalize and raw.kind in FLOAT_KINDS:
        stats, note = normalize_splits(splits, raw.kind, raw.x.shape[1:], normalization)
        notes.append(note)
    for part in splits.values():
        if part is not None and part.encoded is not None:
            part.encoded = replace(part.encoded, layout=shape)  # laid out as decoded
        elif part is not None:
            part.x = part.x.reshape(len(part.x), *shape)
    spec = data_spec(raw, shape, cfg)
    bundle = DataBundle(
        spec,
        splits["train"],
        splits["validation"],
        splits["test"],
        raw.description,
        notes,
        normalization=stats.to_json() if stats else None,
        vocabulary=_vocabulary_json(raw, vocabulary),
    )
    effective_loss(cfg, spec)  # a loss that contradicts the data fails now, not mid-build
    return bundle


def _fitting(parent: Normalization, raw: RawData, notes: list[str]) -> Normalization | None:
    native = tuple(raw.encoded.shape) if raw.encoded is not None else raw.x.shape[1:]
    if tuple(parent.native_shape) == tuple(native):
        notes.append("init.from: the inputs are standardized with the parent run's statistics")
        return parent
    notes.append(
        f"init.from: the parent's statistics are for examples of shape "
        f"{tuple(parent.native_shape)}, these are {tuple(native)}: standardized with their own"
    )
    return None


def _cache_decoded(splits: dict[str, Arrays | None]) -> str:
    """data.cache: disk: each split read from its decoded file (made now if need be)."""
    made = []
    for name, part in splits.items():
        if part is not None:
            part.encoded, new = with_decoded_cache(part.encoded)
            made += [name] if new else []
    how = f"decoded now ({', '.join(made)})" if made else "reused"
    return f"data.cache: disk: the images are read from files of decoded pixels, {how}"


def _check_same_corpus(raw: RawData, vocabulary: dict | None) -> None:
    trained_on = (vocabulary or {}).get("corpus_sha256")
    if trained_on and raw.digest is not None and trained_on != raw.digest:
        raise DataError(
            "data.paths: the files differ from those the run was trained on (added, removed "
            "or changed since); their documents would be dealt to the splits differently, "
            "so held-out text could include trained-on text. Restore the files, or score "
            "other text with `bigmodel evaluate RUN_DIR --data CONFIG`"
        )


def _check_fit_and_split(raw: RawData, cfg: Config) -> tuple[tuple[int, ...], Indices | None]:
    """The layout of one example and the split indices (None when the reader dealt the
    splits). The model-fit, layout and split problems are collected so that the user
    sees all of them at once."""
    problems = model_fit_problems(raw, cfg)
    shape = indices = None
    try:
        native = (sequence_length(cfg),) if raw.kind == "text" else raw.x.shape[1:]
        shape = layout_shape(native, "tokens" if raw.kind == "text" else raw.kind, cfg)
    except DataError as err:
        problems += err.problems
    if raw.dealt is None:
        strata = raw.y if raw.task == "classification" else None
        test_split = 0.0 if raw.test is not None else cfg.data.test_split
        try:
            indices = split_indices(
                len(raw.x), strata, cfg.data.validation_split, test_split, cfg.seed, cfg.data.limit
            )
        except DataError as err:
            problems += err.problems
    if problems:
        raise DataError(problems)
    return shape, indices


def _split(
    raw: RawData, indices: Indices | None, cfg: Config
) -> tuple[dict[str, Arrays | None], list[str]]:
    """The three splits (None for an empty held-out one) and the notes so far."""
    notes = list(raw.notes)
    if raw.dealt is not None:
        dealt, limited = limit_dealt(raw.dealt, cfg)
        splits = {name: part if len(part) else None for name, part in dealt.items()}
        return splits, notes + limited
    if cfg.data.limit and cfg.data.limit < len(raw.x):
        notes.append(f"data.limit: using {cfg.data.limit} of {len(raw.x)} examples")
    train_i, val_i, test_i = indices
    if raw.encoded is not None:  # the labels and where each example is, not its values
        splits = {
            name: Arrays(None, raw.y[i], encoded=raw.encoded.take(i)) if len(i) else None
            for name, i in (("train", train_i), ("validation", val_i), ("test", test_i))
        }
        return splits, notes
    splits = {
        "train": Arrays(raw.x[train_i], raw.y[train_i]),
        "validation": Arrays(raw.x[val_i], raw.y[val_i]) if len(val_i) else None,
        "test": Arrays(raw.x[test_i], raw.y[test_i]) if len(test_i) else None,
    }
    if raw.test is not None:
        splits["test"] = file_test_split(raw.test, cfg)
    return splits, notes


def _vocabulary_json(raw: RawData, given: dict | None) -> dict | None:
    """The vocabulary to save in the run (vocabulary.json), with the digest of the
    corpus it was trained on when the splits depend on the files read."""
    if raw.vocabulary is None:
        return None
    saved = raw.vocabulary.to_json()
    if raw.digest is not None:
        saved["corpus_sha256"] = (given or {}).get("corpus_sha256") or raw.digest
    return saved


def describe(bundle: DataBundle) -> dict:
    """A JSON-ready summary for environment.json / summary.json."""
    stats = bundle_normalization(bundle)
    return {
        "source": bundle.description,
        "task": bundle.spec.task,
        "examples": {
            name: len(part) if part is not None else 0
            for name, part in (
                ("train", bundle.train),
                ("validation", bundle.validation),
                ("test", bundle.test),
            )
        },
        "spec": bundle.spec.to_json(),
        "normalization": stats.to_json() if stats else None,
        "notes": list(bundle.notes),
    }
