"""Seeded synthetic data: a fixed, learnable rule per task, so tests and smoke runs need no files.

Every generator draws its hidden rule (teacher weights, class patterns, Markov chain) and
its examples from `cfg.seed`, so one seed always gives the same arrays, on any machine.
`noise` (default 0.1) is the one knob for difficulty:

- classification: x ~ N(0, 1) of shape (features,); the label is the argmax of a fixed
  random linear + tanh teacher; `noise` = fraction of labels replaced by a random class.
- regression: x ~ N(0, 1); y = linear + sine of fixed random projections of x, plus
  Gaussian noise of std `noise`.
- image: (H, W, C) images of a Gaussian blob whose place on a ring depends on the class,
  jittered; `noise` = std of pixel noise.
- sequence: with `vocab_size`, token ids (T,) where each class draws from its own token
  subset and `noise` is the fraction of uniform tokens; without it, floats (T, features
  or 1): sinusoids whose frequency depends on the class, random phase, noise std `noise`.
- language_model: tokens (T,) from a sparse Markov chain (3 likely successors per
  token); `noise` = fraction of uniform tokens. x = tokens[:-1], y = tokens[1:].

Defaults: examples 2000, features 20, classes 3 (image 4, sequence 2), image_shape
[16, 16, 1], sequence_length 32 (language_model 64), vocab_size 64 (language_model),
noise 0.1. A synthetic key the task does not read is an error, not silently ignored.
No TensorFlow import: these are plain NumPy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bigmodel_cli.config import Config, DataConfig
from bigmodel_cli.data.defaults import SYNTHETIC_SEQUENCE_LENGTH as DEFAULT_SEQUENCE_LENGTH
from bigmodel_cli.data.raw import RawData
from bigmodel_cli.errors import DataError

DEFAULTS = {
    "examples": 2000,
    "features": 20,
    "noise": 0.1,
    "image_shape": (16, 16, 1),
    "vocab_size": 64,
}
DEFAULT_CLASSES = {"classification": 3, "image": 4, "sequence": 2}

# Keys each task reads; any other synthetic key set in the config is an error, so a config
# never carries a setting that silently does nothing.
TASK_KEYS = {
    "classification": {"examples", "features", "classes", "noise"},
    "regression": {"examples", "features", "noise"},
    "image": {"examples", "image_shape", "classes", "noise"},
    "sequence": {"examples", "sequence_length", "vocab_size", "classes", "noise", "features"},
    "language_model": {"examples", "sequence_length", "vocab_size", "noise"},
}
SYNTHETIC_KEYS = set().union(*TASK_KEYS.values())
SUCCESSORS = 3  # likely next tokens per token in the language-model chain


@dataclass
class Synthetic:
    """Generated examples in their native shape and what they mean."""

    x: np.ndarray
    y: np.ndarray
    task: str  # classification | regression | language_model
    kind: str  # tabular | image | sequence | tokens
    num_classes: int | None
    vocab_size: int | None
    description: str


def read_synthetic(cfg: Config, base_dir: Path) -> RawData:
    """`data.source: synthetic`: the examples `generate` draws from `cfg.seed`."""
    s = generate(cfg.data, cfg.seed)
    return RawData(
        x=s.x,
        y=s.y,
        task=s.task,
        kind=s.kind,
        description=s.description,
        num_classes=s.num_classes,
        vocab_size=s.vocab_size,
    )


def generate(data: DataConfig, seed: int) -> Synthetic:
    """Examples for `data.task` (default classification), drawn from `seed`."""
    task = data.task or "classification"
    unused = sorted(k for k in SYNTHETIC_KEYS - TASK_KEYS[task] if getattr(data, k) is not None)
    if task == "sequence" and data.vocab_size is not None and data.features is not None:
        unused.append("features")  # token sequences have one token per step
    if unused:
        raise DataError(
            f"data.{key}: synthetic task {task!r} does not use `{key}`; it reads "
            f"{', '.join(sorted(TASK_KEYS[task]))}. Remove it."
            for key in unused
        )
    # Salted so the data stream is independent of the split shuffle, which also uses `seed`.
    rng = np.random.default_rng([seed, 0x5EED])
    n = data.examples or DEFAULTS["examples"]
    noise = DEFAULTS["noise"] if data.noise is None else data.noise
    classes = data.classes or DEFAULT_CLASSES.get(task)
    length = data.sequence_length or DEFAULT_SEQUENCE_LENGTH.get(task)
    features = data.features if isinstance(data.features, int) else DEFAULTS["features"]
    if task == "classification":
        return _classification(rng, n, features, classes, noise)
    if task == "regression":
        return _regression(rng, n, features, noise)
    if task == "image":
        shape = tuple(data.image_shape or DEFAULTS["image_shape"])
        return _image(rng, n, shape, classes, noise)
    if task == "sequence" and data.vocab_size is not None:
        return _token_sequence(rng, n, length, data.vocab_size, classes, noise)
    if task == "sequence":
        return _float_sequence(rng, n, length, data.features or 1, classes, noise)
    return _language_model(rng, n, length, data.vocab_size or DEFAULTS["vocab_size"], noise)


def _flip(rng: np.random.Generator, labels: np.ndarray, classes: int, rate: float) -> np.ndarray:
    """Replace a `rate` fraction of labels with uniformly random classes."""
    flip = rng.random(len(labels)) < min(rate, 1.0)
    return np.where(flip, rng.integers(0, classes, len(labels)), labels)


def _classification(rng, n, features, classes, noise) -> Synthetic:
    hidden = 16
    linear = rng.normal(size=(features, classes))
    w1 = rng.normal(size=(features, hidden)) / np.sqrt(features)
    w2 = rng.normal(size=(hidden, classes))
    x = rng.normal(size=(n, features))
    # Mostly linear (a linear model gets far above chance); the tanh part rewards depth.
    logits = x @ linear / np.sqrt(features) + 0.5 * np.tanh(x @ w1) @ w2 / np.sqrt(hidden)
    # Centring each class's logit keeps the classes roughly balanced.
    labels = np.argmax(logits - np.median(logits, axis=0), axis=1)
    y = _flip(rng, labels, classes, noise)
    return Synthetic(
        x.astype(np.float32),
        y.astype(np.int64),
        "classification",
        "tabular",
        classes,
        None,
        f"synthetic classification: {n} x {features} Gaussian features, {classes} classes "
        f"from a fixed random teacher, {noise:g} of labels random",
    )


def _regression(rng, n, features, noise) -> Synthetic:
    # Unit-norm projections: x @ w ~ N(0, 1) for every seed, so the linear part always
    # explains ~2/3 of the variance and the sine (the part a linear model misses) ~1/3.
    w, v = rng.normal(size=(2, features))
    w, v = w / np.linalg.norm(w), v / np.linalg.norm(v)
    x = rng.normal(size=(n, features))
    y = x @ w + np.sin(2.0 * (x @ v)) + noise * rng.normal(size=n)
    return Synthetic(
        x.astype(np.float32),
        y.astype(np.float32).reshape(n, 1),
        "regression",
        "tabular",
        None,
        None,
        f"synthetic regression: {n} x {features} Gaussian features, y = linear + sine "
        f"of the features + N(0, {noise:g}^2)",
    )


def _image(rng, n, shape, classes, noise) -> Synthetic:
    height, width, channels = shape
    # Class k's blob sits at angle 2*pi*k/classes on a ring around the centre.
    angles = 2 * np.pi * np.arange(classes) / classes
    radius = 0.3 * min(height, width)
    centres = np.stack(
        [(height - 1) / 2 + radius * np.sin(angles), (width - 1) / 2 + radius * np.cos(angles)],
        axis=1,
    )
    sigma = max(min(height, width) / 8, 0.7)
    labels = rng.integers(0, classes, n)
    jitter = rng.uniform(-1.0, 1.0, size=(n, 2)) * sigma
    cy, cx = (centres[labels] + jitter).T
    rows = np.arange(height, dtype=np.float32)[None, :, None]
    cols = np.arange(width, dtype=np.float32)[None, None, :]
    dist2 = (rows - cy[:, None, None]) ** 2 + (cols - cx[:, None, None]) ** 2
    blob = np.exp(-dist2 / (2 * sigma**2)).astype(np.float32)
    gain = rng.uniform(0.7, 1.3, size=(n, 1, 1, channels)).astype(np.float32)
    x = blob[..., None] * gain + noise * rng.normal(size=(n, *shape)).astype(np.float32)
    return Synthetic(
        x.astype(np.float32),
        labels.astype(np.int64),
        "classification",
        "image",
        classes,
        None,
        f"synthetic image: {n} images {height}x{width}x{channels}, {classes} classes "
        f"(a blob whose position depends on the class), pixel noise {noise:g}",
    )


def _token_sequence(rng, n, length, vocab_size, classes, noise) -> Synthetic:
    if vocab_size < classes:
        raise DataError(
            f"data.vocab_size: {vocab_size} tokens cannot give each of {classes} classes its "
            f"own tokens; use vocab_size >= classes (received vocab_size={vocab_size})."
        )
    labels = rng.integers(0, classes, n)
    # Class k owns tokens k, k + classes, k + 2*classes, ...
    owned = (vocab_size - np.arange(classes) + classes - 1) // classes
    picks = rng.integers(0, owned[labels][:, None], size=(n, length))
    tokens = labels[:, None] + classes * picks
    uniform = rng.random((n, length)) < min(noise, 1.0)
    tokens = np.where(uniform, rng.integers(0, vocab_size, (n, length)), tokens)
    return Synthetic(
        tokens.astype(np.int32),
        labels.astype(np.int64),
        "classification",
        "tokens",
        classes,
        vocab_size,
        f"synthetic sequence: {n} sequences of {length} tokens (vocabulary {vocab_size}), "
        f"{classes} classes (each prefers its own tokens), {noise:g} uniform tokens",
    )


def _float_sequence(rng, n, length, features, classes, noise) -> Synthetic:
    # Frequencies in cycles per sequence, kept well below the Nyquist limit (length / 2).
    freqs = np.linspace(1.0, max(length / 4, 2.0), classes)
    labels = rng.integers(0, classes, n)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, features))
    amp = rng.uniform(0.5, 1.5, size=(n, 1, features))
    steps = np.arange(length)[None, :, None] / length
    x = amp * np.sin(2 * np.pi * freqs[labels][:, None, None] * steps + phase)
    x = x + noise * rng.normal(size=x.shape)
    return Synthetic(
        x.astype(np.float32),
        labels.astype(np.int64),
        "classification",
        "sequence",
        classes,
        None,
        f"synthetic sequence: {n} float sequences of {length} steps x {features} features, "
        f"{classes} classes (sinusoid frequency), noise {noise:g}",
    )


def _language_model(rng, n, length, vocab_size, noise) -> Synthetic:
    branch = min(SUCCESSORS, vocab_size)
    successors = np.stack(
        [rng.choice(vocab_size, branch, replace=False) for _ in range(vocab_size)]
    )
    probs = np.sort(rng.dirichlet(np.ones(branch), size=vocab_size), axis=1)[:, ::-1]
    cumulative = np.cumsum(probs, axis=1)
    tokens = np.empty((n, length + 1), dtype=np.int64)
    tokens[:, 0] = rng.integers(0, vocab_size, n)
    for t in range(length):
        current = tokens[:, t]
        choice = (rng.random(n)[:, None] > cumulative[current]).sum(axis=1)
        nxt = successors[current, np.minimum(choice, branch - 1)]
        uniform = rng.random(n) < min(noise, 1.0)
        tokens[:, t + 1] = np.where(uniform, rng.integers(0, vocab_size, n), nxt)
    return Synthetic(
        tokens[:, :-1].astype(np.int32),
        tokens[:, 1:].astype(np.int64),
        "language_model",
        "tokens",
        vocab_size,
        vocab_size,
        f"synthetic language_model: {n} sequences of {length} tokens (vocabulary {vocab_size}) "
        f"from a sparse Markov chain, {noise:g} uniform tokens",
    )
