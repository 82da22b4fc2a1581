"""`bigmodel generate`: continue a prompt with a trained text language model, one token
at a time, streaming the text as it comes.

**Context window.** The model was trained on sequences of `C = data.sequence_length`
tokens (positions 0..C-1; a larger `model.max_length` only adds position rows training
never used), so at most the last `C` tokens are ever shown to it. When the context is
full and one more token is needed, the context *slides*: the last `C // 2` tokens are
kept, re-encoded from position 0 (positions are absolute, so the cached keys and values
of the old window cannot be reused), and decoding goes on. A long generation thus pays
one full pass over `C // 2` tokens every `C // 2` tokens, and otherwise one position per
token. A prompt longer than `C` tokens keeps its last `C`.

**Two decoders, the same tokens.** `CachedDecoder` encodes the prompt once (prefill),
keeping every block's attention keys and values in a fixed-size cache of `C` positions;
each new token then runs *one* position through the blocks and attends to the cached
positions before it. The cached forward pass is the model's own
(models/transformer_cache.py, through layers.CachedMultiHeadAttention): one graph call
per token, never a retrace. `FullDecoder` (`use_cache=False`, the reference) runs the whole
model over the current window, padded to `C`, for every token. Both see the same window
at every step, so greedy decoding gives the same tokens up to float rounding.

**Sampling** is on the host with NumPy, seeded: `temperature` 0 is greedy (argmax);
otherwise the scores are divided by the temperature, cut to the `top_k` best tokens
and to the smallest set whose probability reaches `top_p` (nucleus), and one token is
drawn. An end-of-document token does not stop generation: it prints as the
vocabulary decodes it (a newline) and the model starts a new document.
"""

from __future__ import annotations

import codecs
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_cli.config import Config
from bigmodel_cli.errors import UserError
from bigmodel_cli.inference.open_run import open_run, run_dir_problem
from bigmodel_cli.spec import DataSpec
from bigmodel_cli.tfenv import import_tensorflow


def check_options(
    max_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    seed: int | None = None,
) -> list[str]:
    """One line per bad generation option (all of them, not just the first)."""
    problems = []
    if max_tokens < 1:
        problems.append(f"--max-tokens: must be at least 1; received {max_tokens}")
    if not temperature >= 0 or math.isinf(temperature):
        problems.append(
            f"--temperature: must be 0 (greedy) or a positive number; received {temperature}"
        )
    if top_k is not None and top_k < 1:
        problems.append(f"--top-k: must be at least 1 (1 is greedy); received {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        problems.append(f"--top-p: must be in (0, 1] (1 keeps every token); received {top_p}")
    if seed is not None and seed < 0:  # NumPy's generators take seeds >= 0 only
        problems.append(f"--seed: must be 0 or more; received {seed}")
    return problems


# === Sampling =================================================================


@dataclass(frozen=True)
class Sampler:
    """Picks the next token from the model's scores (logits, or log-probabilities)."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None

    def picker(self):
        rng = np.random.default_rng(self.seed)
        return lambda scores: self.pick(scores, rng)

    def pick(self, scores: np.ndarray, rng: np.random.Generator) -> int:
        scores = np.asarray(scores, np.float64)
        if self.temperature == 0:
            return int(np.argmax(scores))
        # A stable order makes ties fall to the lowest id, as argmax does: top_k=1 is greedy.
        order = np.argsort(-scores, kind="stable")
        if self.top_k is not None:
            order = order[: self.top_k]
        kept = scores[order]
        # Shifted before dividing: the best token is then exactly 0, and a tiny temperature
        # sends the others to -inf (probability 0) rather than inf - inf = NaN: greedy.
        with np.errstate(over="ignore"):
            probs = np.exp((kept - kept.max()) / self.temperature)
        probs /= probs.sum()
        if self.top_p is not None and self.top_p < 1:
            # The smallest prefix (best first) whose probability reaches top_p.
            before = np.cumsum(probs) - probs
            probs = probs[before < self.top_p]
            order = order[: len(probs)]
            probs /= probs.sum()
        return int(order[rng.choice(len(probs), p=probs)])


# === The run's model ==========================================================


def _text_lm_problem(cfg: Config, path: Path) -> str | None:
    """Why this run cannot generate text, or None."""
    model = cfg.model
    task = getattr(model, "task", None)
    if model.type == "transformer" and task == "language_model":
        if cfg.data.source == "text_corpus":
            return None
        return (
            f"{path}: the run is a Transformer language model on data.source "
            f"{cfg.data.source!r}, whose tokens are not text; generate needs a model trained "
            "on data.source: text_corpus"
        )
    what = f"a {model.type!r} model with task {task!r}" if task else f"a {model.type!r} model"
    return (
        f"{path}: the run trained {what} on data.source {cfg.data.source!r}, not a text "
        "language model; generate needs model.type: transformer with task: language_model "
        "trained on data.source: text_corpus (e.g. configs/lm_python.yaml)"
    )


def language_model_spec(cfg: Config, vocabulary) -> DataSpec:
    """The DataSpec `load_data` gives this config, without reading the corpus."""
    from bigmodel_cli.data import layout_shape
    from bigmodel_cli.data.sources.text_corpus import DEFAULT_SEQUENCE_LENGTH

    length = cfg.data.sequence_length or DEFAULT_SEQUENCE_LENGTH
    shape = layout_shape((length,), "tokens", cfg)
    size = vocabulary.size
    return DataSpec(
        task="language_model",
        input_shape=tuple(int(d) for d in shape),
        input_dtype="int32",
        num_classes=size,
        vocab_size=size,
        sequence_length=int(shape[0]),
    )


class LanguageModel:
    """A run's text language model and vocabulary, ready to decode."""

    def __init__(self, model: Any, vocabulary: Any, source: Path):
        self.model = model
        self.vocabulary = vocabulary
        self.source = source
        self.context = int(model.inputs[0].shape[1])
        self._decoders: dict[bool, Any] = {}

    def encode_prompt(self, prompt: str) -> list[int]:
        """Token ids of `prompt`; an empty prompt is the end-of-document token (a fresh
        document begins after it)."""
        if not prompt:
            return [int(self.vocabulary.end_of_document)]
        return [int(i) for i in self.vocabulary.encode(prompt, "--prompt")]

    def decoder(self, use_cache: bool = True):
        if use_cache not in self._decoders:
            kind = CachedDecoder if use_cache else FullDecoder
            self._decoders[use_cache] = kind(self.model, self.context)
        return self._decoders[use_cache]

    def token_ids(
        self,
        prompt_ids: list[int],
        max_tokens: int,
        sampler: Sampler | None = None,
        use_cache: bool = True,
    ) -> Iterator[int]:
        """The next `max_tokens` token ids, each as soon as it is chosen (greedy unless
        a `sampler` says otherwise)."""
        decoder = self.decoder(use_cache)
        pick = (sampler or Sampler(temperature=0.0)).picker()
        keep = max(1, self.context // 2)
        window = list(prompt_ids[-self.context :])
        scores = decoder.prefill(window)
        for produced in range(1, max_tokens + 1):
            token = pick(scores)
            yield token
            if produced == max_tokens:
                return
            window.append(token)
            if len(window) > self.context:  # full: slide (see the module docstring)
                window = window[-keep:]
                scores = decoder.prefill(window)
            else:
                scores = decoder.step(window)

    def text(self, prompt_ids: list[int], max_tokens: int, sampler: Sampler,
             use_cache: bool = True) -> Iterator[str]:  # fmt: skip
        """The generated text, in pieces; a multi-byte character is never split."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for token in self.token_ids(prompt_ids, max_tokens, sampler, use_cache):
            piece = decoder.decode(self.vocabulary.decode_bytes([token]))
            if piece:
                yield piece
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail


def load_language_model(path: Path) -> LanguageModel:
    """The run's text language model; a UserError says why a run cannot generate."""
    from bigmodel_cli.data import text as text_tokens

    trained = open_run(path)
    problem = _text_lm_problem(trained.cfg, path)
    if problem:
        raise UserError(problem)
    vocabulary = text_tokens.vocabulary_from_json(trained.text_vocabulary())
    model, model_path = trained.load_model(language_model_spec(trained.cfg, vocabulary))
    return LanguageModel(model, vocabulary, model_path)


def _prompt_problem(prompt: str) -> str | None:
    """A prompt that is not text: bytes that are not UTF-8 reach Python's argv as lone
    surrogates (U+DC80..U+DCFF stand for the bytes 0x80..0xFF), which cannot be encoded."""
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as err:
        code = ord(prompt[err.start])
        byte = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
        return (
            f"--prompt: not valid UTF-8 text ({byte} at character {err.start + 1}); give the "
            "prompt as UTF-8 (e.g. convert it with iconv -t UTF-8)"
        )
    return None


def generate(
    run_path: Path,
    prompt: str,
    max_tokens: int = 200,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    use_cache: bool = True,
) -> Iterator[str]:
    """Text continuing `prompt`, streamed in pieces as tokens are chosen.

    Every check (options, run, prompt, decoder) happens here, before the first piece: a
    UserError is raised by this call, never halfway through the stream.
    """
    problems = check_options(max_tokens, temperature, top_k, top_p, seed)
    problem = _prompt_problem(prompt)
    if problem:
        problems.append(problem)
    problem = run_dir_problem(run_path)
    if problem:
        problems.append(problem)
    if problems:
        raise UserError(problems)
    lm = load_language_model(run_path)
    prompt_ids = lm.encode_prompt(prompt)
    sampler = Sampler(temperature, top_k, top_p, seed)
    lm.decoder(use_cache)  # built now: a model the cached decoder cannot read fails here
    return lm.text(prompt_ids, max_tokens, sampler, use_cache)


# === Decoders =================================================================


def _scores_from_output(layer) -> Any:
    """Host function turning the output layer's values into logits (up to a constant)."""
    name = getattr(layer.activation, "__name__", "linear")
    if name == "linear":
        return lambda values: np.asarray(values, np.float64)
    # softmax (a loss without from_logits) or another activation read as probabilities
    return lambda values: np.log(np.maximum(np.asarray(values, np.float64), 1e-30))


def _padded(window: list[int], context: int) -> np.ndarray:
    padded = np.zeros((1, context), np.int32)
    padded[0, : len(window)] = window
    return padded


class FullDecoder:
    """The reference: the whole model over the current window (padded to the model's
    length; causal attention keeps the padding out of earlier positions) for every token."""

    def __init__(self, model: Any, context: int):
        tf = import_tensorflow()
        from bigmodel_cli.models.common import OUTPUT_LAYER

        self.context = context
        self.to_scores = _scores_from_output(model.get_layer(OUTPUT_LAYER))

        @tf.function(
            input_signature=[
                tf.TensorSpec((1, context), tf.int32),
                tf.TensorSpec((), tf.int32),
            ]
        )
        def last_position(tokens, length):
            return model(tokens, training=False)[0, length - 1]

        self._run = last_position

    def prefill(self, window: list[int]) -> np.ndarray:
        padded = _padded(window, self.context)
        return self.to_scores(self._run(padded, np.int32(len(window))).numpy())

    step = prefill


class CachedDecoder:
    """One position per token, reusing every block's keys and values of earlier positions:
    the model's own cached forward pass (models/transformer_cache.py), on the host side."""

    def __init__(self, model: Any, context: int):
        from bigmodel_cli.models.common import OUTPUT_LAYER
        from bigmodel_cli.models.transformer_cache import CachedTransformer

        self.context = context
        self.cached = CachedTransformer(model, context)
        self.to_scores = _scores_from_output(model.get_layer(OUTPUT_LAYER))

    def prefill(self, window: list[int]) -> np.ndarray:
        padded = _padded(window, self.context)
        return self.to_scores(self.cached.prefill(padded, np.int32(len(window))).numpy())

    def step(self, window: list[int]) -> np.ndarray:
        """Scores after `window`, whose all but last tokens are cached already."""
        position = np.int32(len(window) - 1)
        return self.to_scores(self.cached.step(np.int32(window[-1]), position).numpy())

    def traces(self) -> int:
        """How many graphs the cached pass traced (2 when shapes never changed)."""
        return self.cached.traces()
