"""`bigmodel generate`: the cached decoder against the full model, sampling, streaming,
and the errors a user can make (exit 2, one line each, no traceback)."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bigmodel_cli.cli import app
from bigmodel_cli.data.text import ByteVocabulary
from bigmodel_cli.inference.generate import LanguageModel, Sampler, check_options
from tests.helpers import CONFIGS, no_traceback

CONTEXT = 32  # data.sequence_length of the tiny language model


def ascii_corpus(path: Path) -> Path:
    """~15 KB of ASCII Python-like lines: a pattern a tiny model picks up in 40 steps."""
    rng = random.Random(0)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "runs"]
    lines = [
        f"def f{i % 17}(x):\n    return " + " ".join(rng.choices(words, k=rng.randint(3, 9)))
        for i in range(300)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


def train(config: dict | Path, tmp: Path, *args: str) -> Path:
    import yaml

    if isinstance(config, dict):
        path = tmp / "config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        config = path
    result = CliRunner().invoke(
        app, ["train", str(config), "--set", f"output.dir={tmp / 'runs'}", *args]
    )
    assert result.exit_code == 0 and no_traceback(result.output), result.output
    return Path(result.stdout.strip().splitlines()[-1])


def tiny_lm_config(**model) -> dict:
    return {
        "name": "tiny-lm",
        "seed": 1,
        "data": {
            "source": "text_corpus",
            "paths": ["corpus.txt"],
            "sequence_length": CONTEXT,
            "validation_split": 0.1,
            "test_split": 0.1,
            "batch_size": 16,
        },
        "model": {
            "type": "transformer",
            "task": "language_model",
            "d_model": 32,
            "num_heads": 2,
            "num_layers": 2,
            "positional": "learned",
            **model,
        },
        "loss": {"name": "sparse_categorical_crossentropy", "from_logits": True},
        "train": {"epochs": 2, "steps_per_epoch": 20},
    }


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("lm")
    ascii_corpus(tmp / "corpus.txt")
    return train(tiny_lm_config(), tmp)


@pytest.fixture(scope="module")
def lm(lm_run: Path) -> LanguageModel:
    from bigmodel_cli.inference.generate import load_language_model

    return load_language_model(lm_run)


# === Options and sampling (no TensorFlow) ======================================


def test_every_bad_option_is_reported_at_once(tmp_path: Path):
    result = CliRunner().invoke(
        app,
        ["generate", str(tmp_path), "--temperature", "-1", "--top-k", "0", "--top-p", "0",
         "--max-tokens", "0"],
    )  # fmt: skip
    assert result.exit_code == 2 and no_traceback(result.output), result.output
    for phrase in ("--temperature", "--top-k", "--top-p", "--max-tokens", "not a run directory"):
        assert phrase in result.stderr, phrase
    assert result.stdout == ""


def test_good_options_pass():
    assert check_options(1, 0.0, 1, 1.0) == []
    assert check_options(200, 0.7, None, 0.9) == []
    assert check_options(10, float("nan"), None, None)  # NaN is not a temperature


def test_a_negative_seed_is_an_option_error():
    assert check_options(10, 1.0, None, None, seed=-1) == ["--seed: must be 0 or more; received -1"]
    assert check_options(10, 1.0, None, None, seed=0) == []


def test_a_tiny_temperature_is_greedy():
    """Scores divided by 1e-320 overflow to inf; inf - inf would be NaN probabilities."""
    rng = np.random.default_rng(0)
    for scores in ([5.0, 3.0, 4.9, -1e9], [-2.0, -1.0, -1.5], [0.0, 0.0, 1e-300]):
        greedy = int(np.argmax(scores))
        for temperature in (1e-320, 5e-324, 1e-300):
            with warnings.catch_warnings():  # no overflow or invalid-value warnings either
                warnings.simplefilter("error")
                assert Sampler(temperature=temperature).pick(np.array(scores), rng) == greedy


def test_the_decoder_is_built_before_the_first_piece(tmp_path: Path, monkeypatch):
    """A model the cached decoder cannot read fails at the call, before any output."""
    from bigmodel_cli.errors import UserError
    from bigmodel_cli.inference import generate as generation

    class Unreadable:
        def encode_prompt(self, prompt):
            return [0]

        def decoder(self, use_cache=True):
            raise UserError("the run's model has no layer 'embedding'")

        def text(self, *args):
            yield from self.decoder()

    (tmp_path / "config.yaml").write_text("name: x\n")
    monkeypatch.setattr(generation, "load_language_model", lambda path: Unreadable())
    with pytest.raises(UserError, match="no layer"):
        generation.generate(tmp_path, "hi", max_tokens=3)


def test_top_k_and_top_p_keep_only_the_best_tokens():
    scores = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    rng = np.random.default_rng(0)
    for sampler, allowed in (
        (Sampler(top_k=2), {0, 1}),
        (Sampler(top_p=0.5), {0}),  # 0.5 alone reaches 0.5
        (Sampler(top_p=0.75), {0, 1}),
        (Sampler(temperature=0.0), {0}),
    ):
        drawn = {sampler.pick(scores, rng) for _ in range(200)}
        assert drawn == allowed, sampler
    everything = {Sampler().pick(scores, rng) for _ in range(400)}
    assert everything == {0, 1, 2, 3}


def test_multibyte_characters_are_streamed_whole():
    text = "aé€"
    vocabulary = ByteVocabulary.learn(text.encode())
    lm = LanguageModel.__new__(LanguageModel)
    lm.vocabulary = vocabulary
    ids = [int(i) for i in vocabulary.encode(text)]
    lm.token_ids = lambda *args, **kwargs: iter(ids)
    assert list(lm.text([], len(ids), Sampler())) == ["a", "é", "€"]
    lm.token_ids = lambda *args, **kwargs: iter(ids[:2])  # half of "é": replaced, not lost
    assert list(lm.text([], 2, Sampler())) == ["a", "\ufffd"]


# === The cached decoder against the full model ================================


@pytest.mark.parametrize("tied", [False, True], ids=["own output layer", "tied embeddings"])
def test_cached_decoder_matches_the_model_on_random_weights(tied):
    """Sinusoidal positions, a softmax output, dropout, max_length past the data's length:
    the cached scores equal the full model's at every step, across a slide."""
    from bigmodel_cli import distribution
    from bigmodel_cli.config import load as config_load
    from bigmodel_cli.inference.generate import CachedDecoder, FullDecoder, language_model_spec
    from bigmodel_cli.models import build_model
    from bigmodel_cli.tfenv import import_tensorflow

    import_tensorflow()
    import tf_keras as keras

    keras.utils.set_random_seed(3)
    config = tiny_lm_config(positional="sinusoidal", dropout=0.1, ff_dim=48, max_length=40,
                            tie_embeddings=tied)  # fmt: skip
    config["loss"] = "sparse_categorical_crossentropy"  # softmax probabilities out
    cfg = config_load.config_from_mapping(config)
    vocabulary = ByteVocabulary.learn(bytes(range(32, 127)))
    distribution.set_precision("float32")
    model = build_model(cfg, language_model_spec(cfg, vocabulary))
    cached, full = CachedDecoder(model, CONTEXT), FullDecoder(model, CONTEXT)
    tokens = np.random.default_rng(0).integers(0, vocabulary.size, 3 * CONTEXT).tolist()
    window = tokens[:5]
    np.testing.assert_allclose(cached.prefill(window), full.prefill(window), atol=1e-4)
    for token in tokens[5:]:
        window.append(token)
        if len(window) > CONTEXT:
            window = window[-CONTEXT // 2 :]
            got = cached.prefill(window)
        else:
            got = cached.step(window)
        np.testing.assert_allclose(got, full.step(window), atol=1e-4)
    assert cached.traces() == 2  # one graph each for prefill and step, never a retrace


@pytest.mark.slow
def test_greedy_tokens_are_the_same_with_and_without_the_cache(lm: LanguageModel):
    prompt = lm.encode_prompt("def f3(x):\n")
    count = 3 * CONTEXT  # past the window: two slides
    cached = list(lm.token_ids(prompt, count, use_cache=True))
    full = list(lm.token_ids(prompt, count, use_cache=False))
    assert len(cached) == count and cached == full
    assert lm.decoder(True).traces() == 2


@pytest.mark.slow
def test_the_same_seed_gives_the_same_text(lm: LanguageModel):
    prompt = lm.encode_prompt("def ")
    sampled = Sampler(temperature=1.0, top_p=0.95, seed=7)
    first = "".join(lm.text(prompt, 60, sampled))
    assert first == "".join(lm.text(prompt, 60, sampled))
    other = "".join(lm.text(prompt, 60, Sampler(temperature=1.0, top_p=0.95, seed=8)))
    assert other != first


@pytest.mark.slow
def test_top_k_one_is_greedy(lm: LanguageModel):
    prompt = lm.encode_prompt("")  # empty: starts after an end-of-document token
    assert prompt == [lm.vocabulary.end_of_document]
    greedy = list(lm.token_ids(prompt, 50))
    assert list(lm.token_ids(prompt, 50, Sampler(temperature=0.8, top_k=1, seed=1))) == greedy
    assert list(lm.token_ids(prompt, 50, Sampler(top_p=1e-6, seed=2))) == greedy


# === Through the CLI ==========================================================


@pytest.mark.slow
def test_cli_streams_the_prompt_and_new_text(lm_run: Path):
    from bigmodel_cli.inference.generate import generate

    pieces = generate(lm_run, "def f1(x):", max_tokens=20, temperature=0)
    assert len(next(pieces).encode()) == 1  # one byte token at a time, as it is chosen
    assert len("".join(pieces).encode()) == 19

    result = CliRunner().invoke(
        app, ["generate", str(lm_run), "--prompt", "def f1(x):", "--max-tokens", "20",
              "--temperature", "0"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("def f1(x):")
    assert len(result.stdout.rstrip("\n").encode()) >= len("def f1(x):") + 20 - 1
    uncached = CliRunner().invoke(
        app, ["generate", str(lm_run), "--prompt", "def f1(x):", "--max-tokens", "20",
              "--temperature", "0", "--no-cache"],
    )  # fmt: skip
    assert uncached.exit_code == 0 and uncached.stdout == result.stdout


@pytest.mark.slow
def test_a_prompt_byte_outside_the_vocabulary_is_exit_2(lm_run: Path):
    result = CliRunner().invoke(app, ["generate", str(lm_run), "--prompt", "café"])
    assert result.exit_code == 2 and no_traceback(result.output), result.output
    assert "--prompt" in result.stderr and "never occur in the training text" in result.stderr
    assert result.stdout == ""  # nothing echoed before the error


@pytest.mark.slow
def test_a_negative_seed_exits_2_before_any_output(lm_run: Path):
    result = CliRunner().invoke(app, ["generate", str(lm_run), "--prompt", "def", "--seed", "-1"])
    assert result.exit_code == 2 and no_traceback(result.output), result.output
    assert "--seed: must be 0 or more" in result.stderr
    assert result.stdout == ""  # the prompt is not echoed before the error


@pytest.mark.slow
def test_a_classifier_run_cannot_generate(tmp_path: Path):
    run = train(CONFIGS / "digits_mlp.yaml", tmp_path, "--set", "train.epochs=1")
    result = CliRunner().invoke(app, ["generate", str(run), "--prompt", "hi"])
    assert result.exit_code == 2 and no_traceback(result.output), result.output
    assert "not a text language model" in result.stderr and "'mlp'" in result.stderr
