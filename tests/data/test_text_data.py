"""Text data: `text_dir` folders with word/character vocabularies, and BPE for
`text_corpus`. Vocabularies come from the training split only and travel with the run."""

from __future__ import annotations

import json
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest

from bigmodel_cli.cli import app
from bigmodel_cli.data import load_data
from bigmodel_cli.data import text as text_tokens
from bigmodel_cli.data.sources.text_dir import read_text_dir
from bigmodel_cli.data.text import BPEVocabulary, WordVocabulary, learn_bpe
from bigmodel_cli.data.tokenize import encode_texts, vectorize_splits
from bigmodel_cli.errors import DataError
from tests.helpers import run_dir_of, train
from tests.helpers.data import make_cfg, problems

# Each class writes words from its own letters, so both words and characters tell the
# classes apart; the filler words are shared by all of them.
CLASS_LETTERS = {"alpha": "abcdefg", "beta": "hijklmn", "gamma": "opqrstu"}
FILLER = ["the", "and", "of", "with", "for"]


def class_words(letters: str, rng: np.random.Generator, n: int = 12) -> list[str]:
    return ["".join(rng.choice(list(letters), size=rng.integers(3, 7))) for _ in range(n)]


def make_folder(root: Path, per_class: int = 40, seed: int = 0) -> Path:
    """A folder of learnable classes. Document i of the whole folder carries the marker
    word `marki`, which occurs nowhere else: it shows which split learned which word."""
    rng = np.random.default_rng(seed)
    index = 0
    for name, letters in CLASS_LETTERS.items():
        words = class_words(letters, rng)
        (root / name).mkdir(parents=True)
        for n in range(per_class):
            picked = [
                str(rng.choice(words)) if rng.random() < 0.7 else str(rng.choice(FILLER))
                for _ in range(rng.integers(8, 16))
            ]
            text = " ".join([f"mark{index}", *picked]).capitalize() + ".\n"
            (root / name / f"{n:03d}.txt").write_text(text, encoding="utf-8")
            index += 1
    return root


def text_cfg(path: Path, model: str = "rnn", **data):
    return make_cfg({"source": "text_dir", "path": str(path), **data}, model, seed=3)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("text") / "docs")


# === text_dir: reading =======================================================


def test_read_text_dir_gives_strings_and_sorted_class_names(folder: Path):
    raw = read_text_dir(text_cfg(folder), Path("/"))
    assert raw.kind == "text" and raw.task == "classification"
    assert raw.class_names == ("alpha", "beta", "gamma") and raw.num_classes == 3
    assert raw.x.dtype == object and raw.x.shape == (120,) and isinstance(raw.x[0], str)
    assert raw.y.dtype == np.int64 and np.bincount(raw.y).tolist() == [40, 40, 40]
    assert raw.x[0].startswith("Mark0 ")


def test_relative_path_and_nested_and_odd_files(tmp_path: Path):
    root = tmp_path / "data"
    (root / "a" / "deeper").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "one.txt").write_text("first text")
    (root / "a" / "deeper" / "two.TXT").write_text("second text")
    (root / "a" / "notes.md").write_text("not an example")
    (root / "a" / ".hidden.txt").write_text("not an example either")
    (root / "b" / "bad.txt").write_bytes(b"caf\xe9 latin-1")
    (root / ".git").mkdir()  # a hidden folder is not a class
    raw = read_text_dir(text_cfg("data"), tmp_path)
    assert raw.class_names == ("a", "b")
    assert list(raw.x) == ["second text", "first text", "caf\ufffd latin-1"]
    assert any("not valid UTF-8" in note and "bad.txt" in note for note in raw.notes)


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda root: None, "no such folder"),
        (lambda root: root.write_text("x"), "not a folder"),
        (lambda root: (root / "only").mkdir(parents=True), "at least 2; found 1 ('only')"),
        (lambda root: root.mkdir(), "found 0 (none)"),
    ],
)
def test_bad_folders_are_data_errors_naming_the_path(tmp_path, setup, expected):
    root = tmp_path / "docs"
    setup(root)
    with pytest.raises(DataError) as excinfo:
        read_text_dir(text_cfg(root), tmp_path)
    assert expected in problems(excinfo) and str(root) in problems(excinfo)


def test_every_empty_class_folder_is_reported_at_once(tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    (tmp_path / "b" / "x.txt").write_text("some text")
    with pytest.raises(DataError) as excinfo:
        read_text_dir(text_cfg(tmp_path), tmp_path)
    text = problems(excinfo)
    assert "'a' has no .txt files" in text and "'c' has no .txt files" in text
    assert "'b'" not in text


# === word and character vocabularies =========================================


def test_word_vocabulary_order_split_and_ids():
    vocab = WordVocabulary.learn(["Zeta, beta; BETA alpha", "alpha zeta"], "word", 100)
    # alpha, beta and zeta twice (alphabetical among ties), then the punctuation once each.
    assert vocab.tokens == ("alpha", "beta", "zeta", ",", ";")
    assert vocab.size == 7 and vocab.kind == "word"
    assert vocab.encode("Beta, gamma!").tolist() == [3, 5, 1, 1]  # gamma, ! unknown
    capped = WordVocabulary.learn(["Zeta, beta; BETA alpha", "alpha zeta"], "word", 4)
    assert capped.tokens == ("alpha", "beta") and capped.size == 4


def test_character_vocabulary_collapses_whitespace():
    vocab = WordVocabulary.learn(["Ab  a\n\tb"], "character", 100)
    assert vocab.tokens == (" ", "a", "b")  # twice each: alphabetical, space first
    assert vocab.encode("BA  c").tolist() == [4, 3, 2, 1]


def test_padding_in_front_and_truncation_keeps_the_start():
    vocab = WordVocabulary.learn(["a b c d e"], "word", 100)
    cfg = text_cfg("unused", sequence_length=3)
    ids = encode_texts(["b", "a b c d e", ""], vocab, cfg)
    assert ids.tolist() == [[0, 0, 3], [2, 3, 4], [0, 0, 0]]


@pytest.mark.parametrize("tokenizer", ["word", "character"])
def test_load_data_learns_from_the_training_split_only(folder: Path, tokenizer: str):
    cfg = text_cfg(folder, tokenizer=tokenizer, sequence_length=40)
    bundle = load_data(cfg, Path("/"))
    assert bundle.spec.input_dtype == "int32" and bundle.spec.input_shape == (40,)
    assert bundle.train.x.dtype == np.int64 and bundle.train.x.shape[1] == 40
    assert bundle.vocabulary["kind"] == tokenizer
    vocab = text_tokens.vocabulary_from_json(bundle.vocabulary)
    assert bundle.spec.vocab_size == vocab.size
    if tokenizer == "word":
        # Every marker word of a training text is known; no held-out marker is.
        tokens = np.asarray(["<pad>", "<oov>", *vocab.tokens])
        markers = {t for t in vocab.tokens if t.startswith("mark")}
        assert len(markers) == len(bundle.train)
        for row in bundle.train.x:
            assert sum(t.startswith("mark") for t in tokens[row]) == 1
        for part in (bundle.validation, bundle.test):
            assert len(part) > 0
            assert not any(t.startswith("mark") for t in tokens[part.x].ravel())
    # The saved vocabulary reproduces the ids exactly.
    again = load_data(cfg, Path("/"), vocabulary=json.loads(json.dumps(bundle.vocabulary)))
    for name in ("train", "validation", "test"):
        np.testing.assert_array_equal(bundle.split(name).x, again.split(name).x)
    assert again.vocabulary == bundle.vocabulary


def test_max_tokens_caps_the_vocabulary(folder: Path):
    bundle = load_data(text_cfg(folder, max_tokens=10), Path("/"))
    assert bundle.spec.vocab_size == 10 and len(bundle.vocabulary["tokens"]) == 8
    assert bundle.train.x.max() == 9
    with pytest.raises(DataError, match="max_tokens: 2 leaves no id"):
        load_data(text_cfg(folder, max_tokens=2), Path("/"))


def test_a_text_corpus_vocabulary_cannot_encode_a_text_folder(folder: Path):
    byte_vocab = text_tokens.ByteVocabulary.learn(b"abc").to_json()
    with pytest.raises(DataError, match="'byte' vocabulary"):
        vectorize_splits({"train": None}, text_cfg(folder), byte_vocab)


def test_mlp_on_text_is_refused_before_reading_tokens(folder: Path):
    with pytest.raises(DataError, match="cannot read integer token sequences"):
        load_data(text_cfg(folder, model="mlp"), Path("/"))


# === text_dir through the CLI ================================================


def folder_config(path: Path, out: Path, tokenizer: str = "word", length: int = 24) -> dict:
    return {
        "name": "text-dir",
        "seed": 3,
        "data": {
            "source": "text_dir",
            "path": str(path),
            "tokenizer": tokenizer,
            "sequence_length": length,
            "batch_size": 16,
        },
        "model": {"type": "transformer", "d_model": 16, "num_heads": 2, "ff_dim": 32},
        "optimizer": {"name": "adam", "learning_rate": 3.0e-3},
        "train": {"epochs": 8},
        "output": {"dir": str(out)},
    }


@pytest.fixture(scope="module")
def word_run(tmp_path_factory, folder: Path) -> Path:
    import yaml
    from typer.testing import CliRunner

    tmp = tmp_path_factory.mktemp("word-run")
    config = tmp / "text.yaml"
    config.write_text(yaml.safe_dump(folder_config(folder, tmp / "runs")))
    return run_dir_of(train(CliRunner(), config))


def test_word_run_beats_chance_and_saves_the_training_vocabulary(word_run: Path, folder):
    summary = json.loads((word_run / "summary.json").read_text())
    assert summary["test"]["accuracy"] > 0.7  # chance is 1/3
    saved = json.loads((word_run / "vocabulary.json").read_text())
    from bigmodel_cli.config.load import load_config

    cfg = load_config(word_run / "config.yaml")
    bundle = load_data(cfg, word_run)
    assert saved == bundle.vocabulary  # what training learned from its training split
    markers = [t for t in saved["tokens"] if t.startswith("mark")]
    assert len(markers) == summary["data"]["examples"]["train"]


def test_evaluate_reproduces_the_test_score(runner, word_run: Path):
    result = runner.invoke(app, ["evaluate", str(word_run), "--json"])
    assert result.exit_code == 0, result.output
    scored = json.loads(result.stdout)["metrics"]
    test = json.loads((word_run / "summary.json").read_text())["test"]
    assert scored["accuracy"] == pytest.approx(test["accuracy"], abs=1e-6)
    assert scored["loss"] == pytest.approx(test["loss"], rel=1e-4)


def test_predict_encodes_raw_text_with_the_training_vocabulary(runner, word_run, tmp_path):
    from bigmodel_cli import run_dir
    from bigmodel_cli.config.load import load_config

    cfg = load_config(word_run / "config.yaml")
    saved = text_tokens.vocabulary_from_json(run_dir.read_vocabulary(run_dir.RunDir(word_run)))
    # A held-out file: its marker word was never in the training split, so it is OOV (1).
    bundle = load_data(cfg, word_run)
    held_out_marker = next(t for t in (f"mark{i}" for i in range(200)) if t not in saved.tokens)
    ids = encode_texts([f"{held_out_marker} the and"], saved, cfg)
    assert 1 in ids[0].tolist()
    np.testing.assert_array_equal(
        encode_texts(["the and"], saved, cfg),
        encode_texts(["the and"], text_tokens.vocabulary_from_json(bundle.vocabulary), cfg),
    )
    files = []
    for name in CLASS_LETTERS:
        source = sorted((Path(cfg.data.path) / name).glob("*.txt"))[0]
        files.append(tmp_path / f"{name}.txt")
        files[-1].write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    result = runner.invoke(app, ["predict", str(word_run), *map(str, files)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 3 and set(lines[0]["probabilities"]) == set(CLASS_LETTERS)
    assert sum(line["class"] == Path(line["input"]).stem for line in lines) >= 2


@pytest.mark.slow
def test_character_tokenizer_trains(runner, folder: Path, tmp_path: Path, write_config):
    config = write_config(folder_config(folder, tmp_path / "runs", "character", length=64))
    run = run_dir_of(train(runner, config))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["accuracy"] > 0.6
    assert json.loads((run / "vocabulary.json").read_text())["kind"] == "character"


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda root: (root / "a").mkdir(parents=True), "found 1 ('a')"),
        (lambda root: None, "no such folder"),
        (
            lambda root: (
                [(root / n).mkdir(parents=True) for n in "ab"]
                and (root / "a" / "x.txt").write_text("text")
            ),
            "'b' has no .txt files",
        ),
    ],
)
def test_bad_folders_exit_2_without_a_run(runner, tmp_path, write_config, setup, expected):
    root = tmp_path / "docs"
    setup(root)
    result = train(runner, write_config(folder_config(root, tmp_path / "runs")))
    assert result.exit_code == 2, result.output
    assert expected in result.stderr and str(root) in result.stderr
    assert not (tmp_path / "runs").exists()


# === BPE =====================================================================


STDLIB = Path(sysconfig.get_paths()["stdlib"])


def sample_documents() -> list[bytes]:
    """A few real documents, non-ASCII text among them."""
    docs = [(STDLIB / name).read_bytes()[:6000] for name in ("textwrap.py", "colorsys.py")]
    return [*docs, "Ünïcödé naïve café – “quotes” 日本語\n".encode() * 3]


def test_bpe_round_trip_is_exact_and_respects_the_size():
    docs = sample_documents()
    vocab = learn_bpe(docs, 400)
    assert vocab.kind == "bpe" and vocab.size == 400
    for doc in docs:
        ids = vocab.encode_bytes(doc)
        assert vocab.decode_bytes(ids) == doc
        assert len(ids) < len(doc)  # merges shorten it
        assert vocab.bytes_per_token(ids) == pytest.approx(len(doc) / len(ids))
    held_out = "the café wraps text".encode()  # seen bytes, unseen text
    assert vocab.decode_bytes(vocab.encode_bytes(held_out)) == held_out
    # No token crosses a chunk boundary (a word and the space or symbol beside it).
    pieces = [vocab.decode_bytes([i]) for i in range(vocab.unknown + 1, vocab.size)]
    assert all(len(text_tokens._CHUNKS.findall(p)) == 1 for p in pieces)


def test_bpe_stops_when_no_pair_repeats():
    vocab = learn_bpe([b"abab abab"], 1000)
    assert vocab.size < 1000 and vocab.decode_bytes(vocab.encode_bytes(b"abab")) == b"abab"
    with pytest.raises(DataError, match="vocab_size: 3 is smaller"):
        learn_bpe([b"abc"], 3)


def test_bpe_learning_is_deterministic_and_survives_json():
    docs = sample_documents()
    first, second = learn_bpe(docs, 350), learn_bpe(list(docs), 350)
    assert first.merges == second.merges and first.byte_values == second.byte_values
    restored = text_tokens.vocabulary_from_json(json.loads(json.dumps(first.to_json())))
    assert isinstance(restored, BPEVocabulary) and restored == first
    np.testing.assert_array_equal(restored.encode_bytes(docs[0]), first.encode_bytes(docs[0]))


def test_bpe_unseen_bytes_strict_error_or_unknown_token():
    vocab = learn_bpe([b"hello world, hello there"], 300)
    with pytest.raises(DataError) as excinfo:
        vocab.encode("hello \x07wörld", what="--prompt")
    text = problems(excinfo)
    assert text.startswith("--prompt:") and "0x07" in text and "0xc3" in text
    ids = vocab.encode_bytes(b"hello\x07", strict=False)
    assert ids[-1] == vocab.unknown and vocab.decode_bytes(ids) == b"hello?"
    with_eod = np.append(ids, vocab.end_of_document)
    assert vocab.bytes_per_token(with_eod) == pytest.approx(6 / len(with_eod))


@pytest.mark.slow
def test_bpe_learns_and_encodes_the_stdlib_quickly():
    docs = [p.read_bytes() for p in sorted(STDLIB.glob("*.py"))]
    started = time.perf_counter()
    vocab = learn_bpe(docs, 1024)
    learned = time.perf_counter() - started
    ids = [vocab.encode_bytes(d, strict=False) for d in docs]
    encoded = time.perf_counter() - started - learned
    assert vocab.size == 1024 and learned < 60 and encoded < 60
    assert all(vocab.decode_bytes(i) == d for i, d in zip(ids, docs, strict=True))


def test_text_corpus_with_bpe_trains_and_reports_bits_per_byte(runner, tmp_path, write_config):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    source = (STDLIB / "textwrap.py").read_bytes()[:12000]
    for n in range(6):
        (corpus / f"part{n}.txt").write_bytes(source[n * 2000 : (n + 1) * 2000])
    config = write_config(
        {
            "name": "bpe-lm",
            "data": {
                "source": "text_corpus",
                "paths": [str(corpus / "*.txt")],
                "tokenizer": "bpe",
                "vocab_size": 320,
                "sequence_length": 16,
                "batch_size": 16,
            },
            "model": {
                "type": "transformer",
                "task": "language_model",
                "d_model": 16,
                "num_heads": 2,
                "ff_dim": 32,
            },  # fmt: skip
            "train": {"epochs": 2},
        }
    )
    run = run_dir_of(train(runner, config))
    summary = json.loads((run / "summary.json").read_text())
    assert 0 < summary["test"]["bits_per_byte"] < 20
    saved = json.loads((run / "vocabulary.json").read_text())
    assert saved["kind"] == "bpe" and len(saved["byte_values"]) + 2 + len(saved["merges"]) <= 320
    assert summary["data"]["spec"]["bytes_per_token"] > 1.5
