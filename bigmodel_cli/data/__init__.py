"""Data for training: read the source, split, normalize, lay out for the model, batch.

`load_data` returns NumPy splits and a `DataSpec` without importing TensorFlow;
`make_dataset` turns one split into a `tf.data.Dataset` (TensorFlow is imported there).

**Splits** are deterministic given `seed`: the examples are shuffled with
`np.random.default_rng(seed)`, `limit` keeps the first N, then `test_split` and
`validation_split` of them (rounded half up) are held out and the rest trains.
Classification splits are stratified: each class contributes in proportion to its size
(largest remainder), so every split keeps the class balance, and a class too small to
appear everywhere simply lands where the remainders put it.

**Layout** of one example, from the source's native shape (tabular (F,), image
(H, W, C), float sequence (T, F), tokens (T,)):
`model.input_shape` if given (same number of values), else
mlp -> flat (F*...,); cnn -> images as is, tabular (F, 1) for Conv1D, sequences as is;
rnn and transformer -> images (H, W*C) (rows are steps), tabular (F, 1), sequences and
tokens as is, but transformer with `patch_size` (a Vision Transformer) -> images as is;
sequential -> native. Token data needs rnn, transformer or sequential.

**Normalization** (`data.normalize`, float inputs only): mean and std of the training
split over every axis but the last of the native shape, i.e. per feature (tabular,
sequences) or per channel (images); a std of 0 becomes 1. The statistics are in
`bundle.normalization` (a `Normalization`, JSON via `describe`), so evaluate/predict can
apply the training run's statistics to new data (`load_data(..., normalization=...)`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bigmodel_cli.config import Config
from bigmodel_cli.config.defaults import effective_loss, one_hot_labels
from bigmodel_cli.data.sources import RawData, read_source
from bigmodel_cli.errors import DataError
from bigmodel_cli.spec import Arrays, DataBundle, DataSpec
from bigmodel_cli.tfenv import import_tensorflow

FLOAT_KINDS = ("tabular", "image", "sequence", "volume")
ONE_HOT_IN_MEMORY_MAX = 1 << 24  # labels as float32: 64 MB


@dataclass(frozen=True)
class Normalization:
    """Training-split mean and std over the last axis of the native example shape.

    `apply` accepts examples in any layout with the same number of values (flat for an
    MLP, (H, W*C) for an RNN, ...): it views them in `native_shape` to normalize.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    native_shape: tuple[int, ...]
    per: str  # "feature" or "channel", for people reading environment.json

    def apply(self, x: np.ndarray) -> np.ndarray:
        native = x.reshape(len(x), *self.native_shape).astype(np.float32)
        mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
        return ((native - mean) / std).reshape(x.shape)

    def to_json(self) -> dict:
        return {
            "per": self.per,
            "native_shape": list(self.native_shape),
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_json(cls, data: dict) -> Normalization:
        return cls(
            tuple(data["mean"]), tuple(data["std"]), tuple(data["native_shape"]), data["per"]
        )


# === load_data ===============================================================


def load_data(
    cfg: Config,
    base_dir: Path,
    *,
    normalization: Normalization | None = None,
    vocabulary: dict | None = None,
    same_corpus: bool = False,
) -> DataBundle:
    """Read, split, normalize and lay out `cfg.data` for `cfg.model`.

    `base_dir` resolves relative paths (the config file's folder). `normalization` and
    `vocabulary` (JSON form) replace what would be learned from the training split
    (e.g. a trained run's, to evaluate or predict on other data). `same_corpus`: the
    data is the run's own (resume, evaluate), so a text corpus whose files changed since
    training is an error: its documents would be dealt to the splits differently.
    """
    if cfg.data.source == "text_corpus":
        return _load_text_corpus(cfg, Path(base_dir), vocabulary, same_corpus)
    raw = read_source(cfg, Path(base_dir))
    # Collect the model-fit, layout and split problems so the user sees all of them at once.
    problems = _model_fit_problems(raw, cfg)
    strata = raw.y if raw.task == "classification" else None
    test_split = 0.0 if raw.test is not None else cfg.data.test_split
    try:
        if raw.kind == "text":  # one string per example: ids come after the split
            from bigmodel_cli.data.sources.text_dir import sequence_length

            shape = layout_shape((sequence_length(cfg),), "tokens", cfg)
        else:
            shape = layout_shape(raw.x.shape[1:], raw.kind, cfg)
    except DataError as err:
        problems += err.problems
    try:
        train_i, val_i, test_i = split_indices(
            len(raw.x), strata, cfg.data.validation_split, test_split, cfg.seed, cfg.data.limit
        )
    except DataError as err:
        problems += err.problems
    if problems:
        raise DataError(problems)
    notes = list(raw.notes)
    if cfg.data.limit and cfg.data.limit < len(raw.x):
        notes.append(f"data.limit: using {cfg.data.limit} of {len(raw.x)} examples")
    splits = {
        "train": Arrays(raw.x[train_i], raw.y[train_i]),
        "validation": Arrays(raw.x[val_i], raw.y[val_i]) if len(val_i) else None,
        "test": Arrays(raw.x[test_i], raw.y[test_i]) if len(test_i) else None,
    }
    if raw.test is not None:
        splits["test"] = _file_test_split(raw.test, cfg)
    learned_vocabulary = None
    if raw.kind == "text":
        from bigmodel_cli.data.sources.text_dir import vectorize_splits

        # The vocabulary comes from the training split only (or the trained run's).
        splits, words = vectorize_splits(splits, cfg, vocabulary)
        raw = replace(raw, kind="tokens", vocab_size=words.size)
        learned_vocabulary = words.to_json()

    stats = None
    if cfg.data.normalize and raw.kind in FLOAT_KINDS:
        stats = normalization or fit_normalization(splits["train"].x, raw.kind)
        if stats.native_shape != raw.x.shape[1:]:
            raise DataError(
                f"data: the given normalization statistics are for examples of shape "
                f"{stats.native_shape}; this data's are {raw.x.shape[1:]}"
            )
        for part in splits.values():
            if part is not None:
                part.x = stats.apply(part.x)
        count = len(stats.mean)
        origin = "the given" if normalization else "the training split's"
        notes.append(
            f"inputs standardized per {stats.per} ({count} {stats.per}{'s' * (count > 1)}) "
            f"with {origin} mean and std; see normalization"
        )

    for part in splits.values():
        if part is not None:
            part.x = part.x.reshape(len(part.x), *shape)
    spec = _spec(raw, shape, cfg)
    bundle = DataBundle(
        spec,
        splits["train"],
        splits["validation"],
        splits["test"],
        raw.description,
        notes,
        normalization=stats.to_json() if stats else None,
        vocabulary=learned_vocabulary,
    )
    effective_loss(cfg, spec)  # a loss that contradicts the data fails now, not mid-build
    return bundle


def _load_text_corpus(
    cfg: Config, base_dir: Path, vocabulary: dict | None, same_corpus: bool
) -> DataBundle:
    """`text_corpus` deals whole documents to the splits itself (see text_corpus.py)."""
    from bigmodel_cli.data import text as text_tokens
    from bigmodel_cli.data.sources import text_corpus

    given = text_tokens.vocabulary_from_json(vocabulary) if vocabulary else None
    if given is not None and given.kind not in ("byte", "bpe"):
        raise DataError(
            f"data.source: text_corpus needs a byte or bpe vocabulary; the run's is "
            f"{given.kind!r} (a text_dir classifier): score it on text_dir data"
        )
    parts, words, bytes_per_token, description, digest = text_corpus.read_text_corpus(
        cfg, base_dir, given
    )
    trained_on = (vocabulary or {}).get("corpus_sha256")
    if same_corpus and trained_on and trained_on != digest:
        raise DataError(
            "data.paths: the files differ from those the run was trained on (added, removed "
            "or changed since); their documents would be dealt to the splits differently, "
            "so held-out text could include trained-on text. Restore the files, or score "
            "other text with `bigmodel evaluate RUN_DIR --data CONFIG`"
        )
    notes = []
    total = sum(len(pair[0]) for pair in parts.values())
    if cfg.data.limit and cfg.data.limit < total:
        # As for other sources, the limit counts every split's examples; the held-out
        # portions keep their share (at least one sequence each).
        shares = {"test": cfg.data.test_split, "validation": cfg.data.validation_split}
        keep = {k: max(1, _round(cfg.data.limit * f)) for k, f in shares.items()}
        keep["train"] = max(1, cfg.data.limit - keep["test"] - keep["validation"])
        parts = {k: (xs[: keep[k]], ys[: keep[k]]) for k, (xs, ys) in parts.items()}
        notes.append(f"data.limit: using {cfg.data.limit} of {total} sequences")
    x, y = parts["train"]
    raw = RawData(x, y, "language_model", "tokens", description, words.size, None, words.size)
    problems = _model_fit_problems(raw, cfg)
    try:
        shape = layout_shape(x.shape[1:], "tokens", cfg)
    except DataError as err:
        problems += err.problems
    if problems:
        raise DataError(problems)
    splits = {name: Arrays(*pair) if len(pair[0]) else None for name, pair in parts.items()}
    spec = replace(
        _spec(raw, shape, cfg),
        bytes_per_token=bytes_per_token,
        token_bytes=tuple(words.token_bytes()),
    )
    bundle = DataBundle(
        spec,
        splits["train"],
        splits["validation"],
        splits["test"],
        description,
        notes,
        vocabulary={**words.to_json(), "corpus_sha256": trained_on or digest},
    )
    effective_loss(cfg, spec)
    return bundle


def bundle_normalization(bundle: DataBundle) -> Normalization | None:
    """The statistics `load_data` normalized with, or None."""
    return Normalization.from_json(bundle.normalization) if bundle.normalization else None


def fit_normalization(x: np.ndarray, kind: str) -> Normalization:
    """Mean/std over all axes but the last (per feature or per channel); std 0 -> 1."""
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axis=axes, dtype=np.float64)
    std = x.std(axis=axes, dtype=np.float64)
    std[std == 0] = 1.0  # a constant feature carries no signal; leave it at 0 after centring
    per = "channel" if kind in ("image", "volume") else "feature"
    return Normalization(
        tuple(float(v) for v in mean), tuple(float(v) for v in std), tuple(x.shape[1:]), per
    )


def _file_test_split(test: tuple[np.ndarray, np.ndarray], cfg: Config) -> Arrays:
    x, y = test
    if not len(x):
        raise DataError(f"data.path: {cfg.data.path}: x_test has no examples")
    if cfg.data.limit and cfg.data.limit < len(x):
        keep = np.random.default_rng(cfg.seed).permutation(len(x))[: cfg.data.limit]
        x, y = x[keep], y[keep]
    return Arrays(x, y)


# === Splits ==================================================================


def _round(value: float) -> int:
    return math.floor(value + 0.5)  # half up: Python's round(2.5) == 2 would surprise


def split_indices(
    n: int,
    labels: np.ndarray | None,
    validation_split: float,
    test_split: float,
    seed: int,
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded (train, validation, test) indices; stratified when `labels` are given."""
    order = np.random.default_rng(seed).permutation(n)[:limit]
    m = len(order)
    n_test, n_val = _round(m * test_split), _round(m * validation_split)
    problems = [
        f"data.{key}: {frac:g} of {m} examples rounds to 0 examples; raise {key}, use more "
        f"data{' (data.limit)' if limit else ''}, or set it to 0"
        for key, frac, count in (("test_split", test_split, n_test),
                                 ("validation_split", validation_split, n_val))
        if frac > 0 and count == 0
    ]  # fmt: skip
    if not problems and m - n_test - n_val < 1:
        problems.append(
            f"data: {m} examples leave none for training after validation_split="
            f"{validation_split:g} and test_split={test_split:g}; use more data or smaller splits"
        )
    if problems:
        raise DataError(problems)
    if labels is None:
        return order[n_test + n_val :], order[n_test : n_test + n_val], order[:n_test]
    _, cls = np.unique(labels[order], return_inverse=True)
    counts = np.bincount(cls)
    to_test = _allocate(counts, n_test)
    to_val = _allocate(counts - to_test, n_val)
    # rank[i]: how many earlier examples (in shuffled order) share example i's class.
    by_class = np.argsort(cls, kind="stable")
    rank = np.empty(m, dtype=np.int64)
    rank[by_class] = np.arange(m) - np.repeat(np.cumsum(counts) - counts, counts)
    test_end = to_test[cls]
    val_end = test_end + to_val[cls]
    return (
        order[rank >= val_end],
        order[(rank >= test_end) & (rank < val_end)],
        order[rank < test_end],
    )


def _allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Share `total` among classes in proportion to `counts` (largest remainder)."""
    if total == 0:
        return np.zeros_like(counts)
    share = counts * total / counts.sum()
    base = np.floor(share).astype(np.int64)
    # Biggest remainder first, then the bigger class; sum(remainders) == leftover.
    top = np.lexsort((-counts, -(share - base)))[: total - base.sum()]
    base[top] += 1
    return base


# === Layout ==================================================================


def layout_shape(native: tuple[int, ...], kind: str, cfg: Config) -> tuple[int, ...]:
    """Shape of one example as the model reads it (see the module docstring)."""
    size = math.prod(native)
    given = cfg.model.input_shape
    if given is not None:
        if math.prod(given) != size:
            raise DataError(
                f"model.input_shape: {list(given)} holds {math.prod(given)} values per example, "
                f"but the data's examples have shape {list(native)} = {size} values. Use a "
                f"shape whose product is {size} (e.g. {list(native)} or [{size}]), or remove it."
            )
        return tuple(given)
    model = cfg.model.type
    if model == "mlp":
        return (size,)
    if model == "sequential":
        return native
    if kind == "tabular":
        return (*native, 1)  # features as steps of one channel: Conv1D and RNNs read (F, 1)
    if kind == "image" and model == "transformer" and cfg.model.patch_size:
        return native  # a Vision Transformer cuts the image into patches itself
    if kind == "image" and model in ("rnn", "transformer"):
        return (native[0], native[1] * native[2])  # each image row is one step
    return native


def _model_fit_problems(raw: RawData, cfg: Config) -> list[str]:
    model = cfg.model
    problems = []
    if raw.kind in ("tokens", "text") and model.type in ("mlp", "cnn"):
        problems.append(
            f"model.type: {model.type!r} cannot read integer token sequences (the data's inputs "
            "are token ids); use rnn or transformer, which embed tokens, or sequential with an "
            "Embedding layer"
        )
    if raw.kind == "volume" and model.type in ("rnn", "transformer"):
        problems.append(f"model.type: {model.type!r} cannot read 3-D volumes {raw.x.shape[1:]}")
    if model.type == "rnn" and model.embedding_dim and raw.kind not in ("tokens", "text"):
        problems.append(
            "model.embedding_dim: the data has float inputs, not token ids; remove embedding_dim"
        )
    if model.type == "transformer":
        wants_lm = model.task == "language_model"
        if wants_lm and raw.task != "language_model":
            problems.append(
                "model.task: 'language_model' needs token sequences with next-token labels "
                "(data.source: text_corpus, synthetic with task: language_model, or an npz "
                f"of integer x and y of the same shape); {raw.description}"
            )
        if not wants_lm and raw.task == "language_model":
            problems.append(
                "model.task: 'classify' but the data is for a language model; "
                "set model.task: language_model"
            )
        if raw.vocab_size and model.vocab_size and model.vocab_size < raw.vocab_size:
            problems.append(
                f"model.vocab_size: {model.vocab_size} but the data has token ids up to "
                f"{raw.vocab_size - 1}; use vocab_size >= {raw.vocab_size} or remove it"
            )
        steps = raw.x.shape[1] if raw.x.ndim >= 2 else 1
        rows = model.input_shape is None and not model.patch_size  # ViT: the builder checks
        if model.max_length and rows and model.max_length < steps:
            problems.append(
                f"model.max_length: {model.max_length} is shorter than the data's sequences "
                f"({steps} steps); use max_length >= {steps} or remove it"
            )
    problems += _augment_problems(raw, cfg)
    return problems


def _augment_problems(raw: RawData, cfg: Config) -> list[str]:
    """`data.augment` transforms images, so the model must read (H, W, C) images."""
    if cfg.data.augment is None or not cfg.data.augment.active:
        return []
    if raw.kind != "image":
        return [
            f"data.augment: random image transformations need images (height, width, "
            f"channels); this data's examples are {raw.kind} of shape {list(raw.x.shape[1:])}. "
            "Remove data.augment"
        ]
    try:
        shape = layout_shape(raw.x.shape[1:], raw.kind, cfg)
    except DataError:
        return []  # reported by load_data's own layout check
    if len(shape) == 3:
        return []
    hint = "set model.patch_size" if cfg.model.type == "transformer" else "use model.type cnn"
    return [
        f"data.augment: random image transformations need the model to read images as "
        f"(height, width, channels), but model.type {cfg.model.type!r} reads each example as "
        f"{list(shape)}. Remove data.augment, or {hint} (cnn, sequential and transformer "
        "with patch_size read images as they are)"
    ]


def _spec(raw: RawData, shape: tuple[int, ...], cfg: Config) -> DataSpec:
    tokens = raw.kind == "tokens"
    sequence = (tokens and len(shape) == 1) or (not tokens and len(shape) == 2)
    return DataSpec(
        task=raw.task,
        input_shape=tuple(int(d) for d in shape),
        input_dtype="int32" if tokens else "float32",
        num_classes=raw.num_classes,
        target_size=int(raw.y.shape[1]) if raw.task == "regression" else 1,
        vocab_size=raw.vocab_size if tokens else None,
        sequence_length=int(shape[0]) if sequence else None,
        class_names=raw.class_names,
        feature_names=raw.feature_names,
    )


# === tf.data ================================================================


def _epoch_stream(x: np.ndarray, y: np.ndarray, cfg: Config, start: tuple[int, int]):
    """Batches of epochs `start[0]`, `start[0] + 1`, ... without end, the first epoch's
    first `start[1]` batches skipped. Each epoch is a permutation of the example indices
    seeded by (seed, epoch), so any position of the stream is reached without reading
    what comes before it, and a resumed run sees the batches an uninterrupted run would.
    """
    tf = import_tensorflow()

    first_epoch, first_step = start
    n, batch_size, shuffle = len(x), cfg.data.batch_size, cfg.data.shuffle
    seed = tf.constant(cfg.seed, tf.int64)

    def epoch_batches(epoch):
        order = tf.range(n, dtype=tf.int64)
        if shuffle:
            keys = tf.random.stateless_uniform([n], seed=tf.stack([seed, epoch]))
            order = tf.cast(tf.argsort(keys, stable=True), tf.int64)
        batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size)
        skipped = tf.where(epoch == first_epoch, tf.constant(first_step, tf.int64), 0)
        return batches.skip(skipped)

    inputs, labels = tf.constant(x), tf.constant(y)
    stream = tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch_batches)
    return stream.map(
        lambda index: (tf.gather(inputs, index), tf.gather(labels, index)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def make_dataset(
    arrays: Arrays,
    cfg: Config,
    spec: DataSpec,
    *,
    training: bool,
    start: tuple[int, int] | None = None,
):
    """A batched `tf.data.Dataset` of (inputs, labels) in the form the loss expects.

    Sparse class labels are int32; `categorical_crossentropy` gets one-hot float32;
    `binary_crossentropy` gets float32 (n, 1); regression float32 (n, target_size).

    With `start=(epoch, step)` (training), the result is an endless stream of epochs from
    `epoch` on, epoch e shuffled with a seed made of (seed, e), its first `step` batches
    skipped: a run resumed at any step sees exactly the batches an uninterrupted run would.
    Give `fit` a `steps_per_epoch` with it.
    """
    tf = import_tensorflow()  # here, not at import: loading and validating stay light

    x = arrays.x.astype(np.int32 if spec.input_dtype == "int32" else np.float32, copy=False)
    loss = effective_loss(cfg, spec)
    if spec.task == "regression":
        y = arrays.y.astype(np.float32, copy=False).reshape(len(x), -1)
    elif loss.name == "binary_crossentropy":
        y = arrays.y.astype(np.float32).reshape(len(x), 1)
    else:
        y = arrays.y.astype(np.int32)
    encode_in_map = one_hot_labels(cfg, spec)
    if encode_in_map and len(y) * spec.num_classes <= ONE_HOT_IN_MEMORY_MAX:
        # A tf.data map costs ~0.2 ms a batch on 2 cores, more than a small model's step.
        y = np.eye(spec.num_classes, dtype=np.float32)[y]
        encode_in_map = False
    if training and start is not None:
        ds = _epoch_stream(x, y, cfg, start)
    else:
        # No cache(): the slices already live in memory, caching would only copy them.
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        if training and cfg.data.shuffle:
            ds = ds.shuffle(len(x), seed=cfg.seed, reshuffle_each_iteration=True)
        ds = ds.batch(cfg.data.batch_size)
    if encode_in_map:
        depth = spec.num_classes
        # After batching: one vectorized op per batch, and no (n, classes) copy in memory.
        ds = ds.map(lambda xb, yb: (xb, tf.one_hot(yb, depth)), num_parallel_calls=tf.data.AUTOTUNE)
    if training and cfg.data.augment is not None and cfg.data.augment.active:
        from bigmodel_cli.data.augment import augment_batches

        # Training batches only; where each batch sits in the stream seeds its transforms.
        first_batch = 0
        if start is not None:
            first_batch = start[0] * math.ceil(len(x) / cfg.data.batch_size) + start[1]
        ds = augment_batches(ds, cfg.data.augment, cfg.seed, first_batch)
    options = tf.data.Options()
    # In-memory data has no files to shard; say so, instead of TF trying FILE and warning.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


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
