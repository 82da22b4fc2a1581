"""`data.source: text_corpus`: documents dealt whole to the splits, a byte vocabulary
from the training portion, packed sequences, bits per byte, and the time limit."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bigmodel_cli.cli import app
from bigmodel_cli.config.load import load_config
from bigmodel_cli.data import load_data
from bigmodel_cli.data import text as text_tokens
from bigmodel_cli.data.sources.text_corpus import (
    deal_documents,
    document_size,
    list_documents,
    read_document,
)
from bigmodel_cli.data.tokenize import pack
from bigmodel_cli.errors import DataError
from tests.helpers import no_traceback
from tests.helpers.data import make_cfg, problems
from tests.helpers.text import write_documents

LM = {"type": "transformer", "task": "language_model", "d_model": 32, "num_heads": 2}


def corpus_cfg(paths, **data):
    data = {"source": "text_corpus", "paths": paths, "sequence_length": 32, **data}
    return make_cfg(data, "lm")


def test_documents_go_whole_to_one_split_and_train_learns_the_vocabulary(tmp_path):
    write_documents(tmp_path / "docs")
    # A byte that only a held-out document contains never enters the vocabulary.
    files = sorted((tmp_path / "docs").glob("*.txt"))
    documents = [p.read_bytes() for p in files]
    dealt = deal_documents(list_documents(files, None), 0.1, 0.1, seed=42)
    portions = {name: [read_document(d) for d in docs] for name, docs in dealt.items()}
    assert sorted(sum(portions.values(), [])) == sorted(documents)
    assert all(portions[k] for k in ("train", "validation", "test"))
    held_out = portions["test"][0]
    (tmp_path / "docs" / f"doc{documents.index(held_out):02d}.txt").write_bytes(held_out + b"~")
    bundle = load_data(corpus_cfg(["docs/*.txt"]), tmp_path)
    vocabulary = text_tokens.vocabulary_from_json(bundle.vocabulary)
    assert ord("~") not in vocabulary.byte_values  # seen only in a test document
    assert bundle.test.x.max() <= vocabulary.unknown
    assert vocabulary.unknown in bundle.test.x or vocabulary.unknown in bundle.test.y
    assert bundle.spec.task == "language_model" and bundle.spec.input_shape == (32,)
    assert bundle.spec.vocab_size == vocabulary.size
    assert 0.95 < bundle.spec.bytes_per_token < 1.0  # one token per byte, plus separators


def test_sequences_are_packed_and_labels_are_the_next_token():
    ids = np.arange(100)
    x, y = pack(ids, 32)
    assert x.shape == y.shape == (3, 32)  # 99 // 32: the last, partial sequence is dropped
    np.testing.assert_array_equal(y, x + 1)
    np.testing.assert_array_equal(x.ravel(), ids[:96])


def test_byte_vocabulary_round_trip_and_strict_encoding():
    vocabulary = text_tokens.ByteVocabulary.learn(b"hello world\n")
    ids = vocabulary.encode("hello")
    assert vocabulary.decode_bytes(ids) == b"hello"
    with pytest.raises(DataError) as excinfo:
        vocabulary.encode("héllo", what="--prompt")
    assert "--prompt" in problems(excinfo) and "0xc3" in problems(excinfo)
    assert vocabulary.encode_bytes(b"z", strict=False).tolist() == [vocabulary.unknown]


def test_stdlib_placeholder_finds_this_pythons_sources():
    bundle = load_data(
        corpus_cfg(["{stdlib}/json/*.py"], validation_split=0.2, test_split=0.2), Path("/")
    )
    assert len(bundle.train) > 10 and bundle.vocabulary["kind"] == "byte"


def test_limit_counts_every_split(tmp_path):
    write_documents(tmp_path / "docs")
    bundle = load_data(corpus_cfg(["docs/*.txt"], limit=20), tmp_path)
    sizes = [len(bundle.train), len(bundle.validation), len(bundle.test)]
    assert sum(sizes) == 20 and min(sizes) >= 1


@pytest.mark.parametrize(
    ("setup", "data", "key"),
    [
        (lambda d: (d / "tiny.txt").write_text("print(1)\n"), {"paths": ["tiny.txt"]}, "fewer"),
        (lambda d: None, {"paths": ["nothing/*.txt"]}, "data.paths"),
        (lambda d: (d / "empty.txt").write_text(""), {"paths": ["empty.txt"]}, "empty"),
    ],
    ids=["smaller-than-a-sequence", "no-match", "empty-file"],
)
def test_unusable_corpora_exit_2_without_a_run(runner, write_config, tmp_path, setup, data, key):
    setup(tmp_path)
    config = write_config(
        {"data": {"source": "text_corpus", "sequence_length": 64, **data}, "model": LM}
    )
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 2, result.output
    assert key in result.output and no_traceback(result.output)
    assert not (tmp_path / "runs").exists()


def test_bits_per_byte_is_only_for_text_language_models(runner, write_config):
    config = write_config({"data": {"source": "digits"}, "model": {"type": "mlp"},
                           "metrics": ["accuracy", "bits_per_byte"]})  # fmt: skip
    result = runner.invoke(app, ["validate", str(config), "--no-build"])
    assert result.exit_code == 2 and "bits_per_byte" in result.output


EPOCHS_TO_LEARN = 8


def test_a_byte_lm_learns_beyond_byte_frequencies(runner, write_config, tmp_path):
    """A fixed amount of training (not a time limit: how far a time limit gets depends on
    what else the machine runs)."""
    write_documents(tmp_path / "docs", count=30)
    config = write_config(
        {
            "data": {
                "source": "text_corpus",
                "paths": ["docs/*.txt"],
                "sequence_length": 32,
                "batch_size": 16,
            },
            "model": {**LM, "num_layers": 1},
            "optimizer": {"name": "adam", "learning_rate": 3.0e-3},
            "train": {"epochs": EPOCHS_TO_LEARN, "steps_per_epoch": 40},
        }
    )
    result = runner.invoke(app, ["train", str(config), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # A unigram byte model: the entropy of the training text's byte frequencies.
    text = b"".join(p.read_bytes() for p in (tmp_path / "docs").glob("*.txt"))
    counts = np.bincount(np.frombuffer(text, np.uint8), minlength=256)
    p = counts[counts > 0] / counts.sum()
    unigram_bits = float(-(p * np.log2(p)).sum())
    test = summary["test"]
    assert test["bits_per_byte"] < 0.7 * unigram_bits, (test, unigram_bits)
    # Bits per byte is the loss in bits, per byte of the test split's text.
    run = Path(summary["run_dir"])
    bundle = load_data(load_config(run / "config.yaml"), run)
    vocabulary = text_tokens.vocabulary_from_json(bundle.vocabulary)
    expected = test["loss"] / math.log(2) / vocabulary.bytes_per_token(bundle.test.y)
    assert test["bits_per_byte"] == pytest.approx(expected, rel=1e-4)
    assert test["perplexity"] == pytest.approx(math.exp(test["loss"]), rel=1e-3)

    scored = runner.invoke(app, ["evaluate", str(run), "--json"])
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["metrics"]["bits_per_byte"] == pytest.approx(
        test["bits_per_byte"], rel=1e-5
    )
    refused = runner.invoke(app, ["predict", str(run), str(tmp_path / "docs" / "doc00.txt")])
    assert refused.exit_code == 2 and "bigmodel generate" in refused.output


def test_a_byte_lm_stops_at_its_time_limit(runner, write_config, tmp_path):
    write_documents(tmp_path / "docs", count=30)
    config = write_config(
        {
            "data": {"source": "text_corpus", "paths": ["docs/*.txt"], "sequence_length": 32,
                     "batch_size": 16},
            "model": {**LM, "num_layers": 1},
            "train": {"epochs": 1000, "steps_per_epoch": 40, "time_limit_minutes": 0.05},
        }
    )  # fmt: skip
    result = runner.invoke(app, ["train", str(config), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["stop_reason"] == "time_limit" and summary["epochs_run"] < 1000


def test_one_large_document_cannot_swallow_a_held_out_split(tmp_path):
    files = [tmp_path / f"{i:03d}.txt" for i in range(201)]
    files[0].write_bytes(b"x" * 5000)
    for i, path in enumerate(files[1:]):
        path.write_bytes(bytes([65 + i % 20]) * 10)
    portions = deal_documents(list_documents(files, None), 0.1, 0.1, seed=0)
    sizes = {name: sum(map(document_size, docs)) for name, docs in portions.items()}
    assert sizes["test"] <= 0.15 * 7000 and sizes["validation"] <= 0.15 * 7000
    assert sizes["train"] >= 0.7 * 7000


def test_glob_characters_in_the_config_folder_are_literal(runner, tmp_path):
    folder = tmp_path / "exp[1]"
    write_documents(folder / "docs")
    config = folder / "lm.yaml"
    config.write_text(
        "data: {source: text_corpus, paths: [docs/*.txt], sequence_length: 32}\n"
        "model: {type: transformer, task: language_model, d_model: 16, num_heads: 2}\n"
        f"train: {{epochs: 1, steps_per_epoch: 2}}\noutput: {{dir: {tmp_path / 'runs'}}}\n"
    )
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 0, result.output
    run = Path(result.stdout.strip().splitlines()[-1])
    # The run's config.yaml names the files so that evaluate (from anywhere) finds them.
    scored = runner.invoke(app, ["evaluate", str(run), "--json"])
    assert scored.exit_code == 0, scored.output


def test_a_text_dir_vocabulary_cannot_score_a_corpus(tmp_path):
    write_documents(tmp_path / "docs")
    words = {"kind": "word", "tokens": ["the", "cat"], "lowercase": True}
    with pytest.raises(DataError) as excinfo:
        load_data(corpus_cfg(["docs/*.txt"]), tmp_path, vocabulary=words)
    assert "byte or bpe vocabulary" in problems(excinfo)


def test_evaluate_refuses_a_corpus_that_changed_since_training(runner, write_config, tmp_path):
    write_documents(tmp_path / "docs")
    config = write_config(
        {
            "data": {"source": "text_corpus", "paths": ["docs/*.txt"], "sequence_length": 32},
            "model": {**LM, "d_model": 16},
            "train": {"epochs": 1, "steps_per_epoch": 2},
        }
    )
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 0, result.output
    run = Path(result.stdout.strip().splitlines()[-1])
    assert runner.invoke(app, ["evaluate", str(run)]).exit_code == 0
    write_documents(tmp_path / "docs", count=21, seed=5)  # one more file, all rewritten
    changed = runner.invoke(app, ["evaluate", str(run)])
    assert changed.exit_code == 2 and "data.paths" in changed.output
    assert "differ from those the run was trained on" in changed.output
    # Scoring other text on purpose (--data) is still allowed.
    other = runner.invoke(app, ["evaluate", str(run), "--data", str(config)])
    assert other.exit_code == 0, other.output
